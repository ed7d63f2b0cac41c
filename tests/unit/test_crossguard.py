"""The CrossGuard pack reports exactly what the plain rules find."""

from __future__ import annotations

import copy
from typing import Any

from pulumi_policy import EnforcementLevel, ResourceValidationPolicy, StackValidationPolicy
from pulumi_policy.policy import PolicyResource, ResourceValidationArgs, StackValidationArgs
from support.stack_renders import rendered_stack

from llamafleet.policy.crossguard import policies
from llamafleet.policy.rules import FLEET_RULES, OBJECT_RULES


def _resource_args(obj: dict[str, Any]) -> ResourceValidationArgs:
    return ResourceValidationArgs(
        "kubernetes:apps/v1:Deployment",
        obj,
        "urn:x",
        obj["metadata"]["name"],
        None,
        None,
        None,
        None,
    )


def test_one_mandatory_policy_per_rule() -> None:
    names = [p.name for p in policies()]
    assert len(names) == len(set(names)) == len(OBJECT_RULES) + len(FLEET_RULES)
    assert all(p.enforcement_level == EnforcementLevel.MANDATORY for p in policies())


def test_resource_policies_report_a_broken_deployment_and_pass_a_good_one() -> None:
    good = next(o for o in rendered_stack("local").kubernetes_objects if o["kind"] == "Deployment")
    bad = copy.deepcopy(good)
    bad["spec"]["template"]["spec"]["containers"][0]["securityContext"][
        "readOnlyRootFilesystem"
    ] = False
    assert _resource_violations(good) == []
    assert _resource_violations(bad) == [
        "container llama-server: readOnlyRootFilesystem is not true"
    ]


def _resource_violations(obj: dict[str, Any]) -> list[str]:
    reported: list[str] = []
    for policy in policies():
        if isinstance(policy, ResourceValidationPolicy):
            policy.validate(_resource_args(obj), lambda message, urn=None: reported.append(message))
    return reported


def test_stack_policies_see_every_kubernetes_resource() -> None:
    objects = [
        o
        for o in rendered_stack("local").kubernetes_objects
        if o["metadata"].get("name") != "default-deny"
    ]
    resources = [
        PolicyResource(
            f"kubernetes:x:{o['kind']}", o, "urn:x", o["metadata"]["name"], None, None, [], {}, None
        )
        for o in objects
    ]
    reported: list[str] = []
    for policy in policies():
        if isinstance(policy, StackValidationPolicy):
            policy.validate(
                StackValidationArgs(resources, None),
                lambda message, urn=None: reported.append(message),
            )
    assert reported and all("namespace has no default-deny" in r for r in reported)
