"""Each policy rule passes the rendered pod and fails on the one thing it guards."""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

import pytest
from support.stack_renders import rendered_stack

from llamafleet.policy.rules import violations


def deployment() -> dict[str, Any]:
    objects = rendered_stack("local").kubernetes_objects
    return copy.deepcopy(next(o for o in objects if o["kind"] == "Deployment"))


def fleet() -> list[dict[str, Any]]:
    return copy.deepcopy(rendered_stack("local").kubernetes_objects)


def server(obj: dict[str, Any]) -> dict[str, Any]:
    return obj["spec"]["template"]["spec"]["containers"][0]


def pod(obj: dict[str, Any]) -> dict[str, Any]:
    return obj["spec"]["template"]["spec"]


BREAKS: list[tuple[str, Callable[[dict[str, Any]], None]]] = [
    (
        "runs_as_non_root",
        lambda d: [
            pod(d)["securityContext"].pop("runAsNonRoot"),
            server(d)["securityContext"].pop("runAsNonRoot"),
            pod(d)["initContainers"][0]["securityContext"].pop("runAsNonRoot"),
        ],
    ),
    ("runs_as_non_root", lambda d: server(d)["securityContext"].update(runAsUser=0)),
    (
        "read_only_root_filesystem",
        lambda d: server(d)["securityContext"].update(readOnlyRootFilesystem=False),
    ),
    (
        "no_privilege_escalation",
        lambda d: server(d)["securityContext"].pop("allowPrivilegeEscalation"),
    ),
    (
        "no_privilege_escalation",
        lambda d: pod(d)["initContainers"][0]["securityContext"].update(privileged=True),
    ),
    (
        "drops_all_capabilities",
        lambda d: server(d)["securityContext"].update(capabilities={"drop": ["NET_RAW"]}),
    ),
    (
        "drops_all_capabilities",
        lambda d: server(d)["securityContext"]["capabilities"].update(add=["SYS_ADMIN"]),
    ),
    (
        "seccomp_runtime_default",
        lambda d: [
            pod(d)["securityContext"].pop("seccompProfile"),
            server(d)["securityContext"].update(seccompProfile={"type": "Unconfined"}),
        ],
    ),
    ("requests_and_limits", lambda d: server(d)["resources"].pop("limits")),
    (
        "requests_and_limits",
        lambda d: pod(d)["initContainers"][0]["resources"]["requests"].pop("memory"),
    ),
    ("image_pinned_by_digest", lambda d: server(d).update(image="llama-server:latest")),
    ("probes", lambda d: server(d).pop("livenessProbe")),
    ("no_host_access", lambda d: pod(d).update(hostNetwork=True)),
    (
        "no_host_access",
        lambda d: pod(d)["volumes"].append({"name": "cache", "hostPath": {"path": "/var/lib"}}),
    ),
    ("no_service_account_token", lambda d: pod(d).pop("automountServiceAccountToken")),
]


def test_the_rendered_fleet_passes_every_rule() -> None:
    assert violations(fleet()) == []


@pytest.mark.parametrize(
    ("rule", "breaks"), BREAKS, ids=[f"{r}-{i}" for i, (r, _) in enumerate(BREAKS)]
)
def test_each_rule_catches_what_it_guards(
    rule: str, breaks: Callable[[dict[str, Any]], None]
) -> None:
    broken = deployment()
    breaks(broken)
    objects = [o for o in fleet() if o["kind"] != "Deployment"] + [broken]
    found = violations(objects)
    assert any(v.startswith(f"{rule}: Deployment llamafleet-demo/") for v in found), found


def test_a_namespace_without_default_deny_is_caught() -> None:
    objects = [o for o in fleet() if o["metadata"].get("name") != "default-deny"]
    assert [v for v in violations(objects) if v.startswith("default_deny_everywhere:")]


def test_a_workload_without_its_own_network_policy_is_caught() -> None:
    objects = [
        o for o in fleet() if not (o["kind"] == "NetworkPolicy" and o["spec"]["podSelector"])
    ]
    assert [v for v in violations(objects) if v.startswith("workloads_have_network_policy:")]
