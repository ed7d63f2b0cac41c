"""The policy rules over a preview's engine events: objects as the engine shows them (unknowns as
its marker, secrets as signature objects), failing closed where a rule needs what is hidden; and
the registration gate `up` runs on each object as the engine registers it."""

from __future__ import annotations

import copy
from typing import Any

import pulumi
import pytest
from google.protobuf import struct_pb2
from pulumi.output import Unknown
from pulumi.runtime import rpc, settings
from pulumi.runtime.rpc import UNKNOWN
from support.stack_renders import rendered_stack

from llamafleet.policy.registered import (
    Hidden,
    RefusedByPolicy,
    RegisteredObjects,
    RegistrationGate,
    kubernetes_object,
)
from llamafleet.policy.rules import NotKnownYet

# A secret as the engine's events show one (pulumi/runtime/rpc.py's signature key and value).
SHOWN_SECRET = {
    "4dabf18193072939515e22adb298388d": "1b47061264138c4ac30d75fd1eb44270",
    "ciphertext": "[secret]",
}
DEPLOYMENT = "kubernetes:apps/v1:Deployment"


def local_objects() -> list[dict[str, Any]]:
    return copy.deepcopy(rendered_stack("local").kubernetes_objects)


def the_deployment(objects: list[dict[str, Any]]) -> dict[str, Any]:
    return next(o for o in objects if o["kind"] == "Deployment")


def registered(objects: list[dict[str, Any]]) -> RegisteredObjects:
    found = RegisteredObjects()
    for n, obj in enumerate(objects):
        found.add(f"urn:{n}", f"kubernetes:x/v1:{obj['kind']}", obj)
    return found


def test_a_compliant_stack_passes() -> None:
    assert registered(local_objects()).findings().lines() == []


def test_a_violation_is_reported_with_its_rule() -> None:
    objects = local_objects()
    server = the_deployment(objects)["spec"]["template"]["spec"]["containers"][0]
    server["securityContext"]["readOnlyRootFilesystem"] = False
    (problem,) = registered(objects).findings().lines()
    assert problem.startswith("read_only_root_filesystem: Deployment llamafleet-")
    assert problem.endswith(": container llama-server: readOnlyRootFilesystem is not true")


def test_an_image_unknown_until_the_update_fails_closed() -> None:
    objects = local_objects()
    server = the_deployment(objects)["spec"]["template"]["spec"]["containers"][0]
    server["image"] = UNKNOWN
    (problem,) = registered(objects).findings().lines()
    assert problem.startswith("image_pinned_by_digest: Deployment llamafleet-")
    assert problem.endswith(
        ": cannot be checked: Deployment.spec.template.spec.containers[0].image is not known "
        "until the update"
    )


def test_containers_hidden_as_a_secret_fail_every_container_rule_closed() -> None:
    objects = local_objects()
    the_deployment(objects)["spec"]["template"]["spec"]["containers"] = SHOWN_SECRET
    problems = registered(objects).findings().lines()
    assert problems, "a pod whose containers are hidden must not pass"
    assert all("cannot be checked: " in p and "is a secret" in p for p in problems), problems
    assert {p.split(":")[0] for p in problems} >= {"runs_as_non_root", "image_pinned_by_digest"}


def test_an_unknown_value_no_rule_reads_passes() -> None:
    objects = local_objects()
    template = the_deployment(objects)["spec"]["template"]
    template["metadata"].setdefault("annotations", {})["llamafleet.io/key-mark"] = UNKNOWN
    assert registered(objects).findings().lines() == []


def test_a_namespace_not_known_yet_fails_the_fleet_rules_closed() -> None:
    objects = local_objects()
    the_deployment(objects)["metadata"]["namespace"] = UNKNOWN
    problems = registered(objects).findings().lines()
    assert "default_deny_everywhere: cannot be checked: " in "\n".join(problems), problems


def test_only_kubernetes_objects_that_exist_after_the_step_count() -> None:
    found = RegisteredObjects()
    found.add("urn:provider", "pulumi:providers:kubernetes", {"kubeconfig": "x"})
    found.add("urn:dynamic", "pulumi-python:dynamic:Resource", {"kind": "Deployment"})
    found.add("urn:release", "kubernetes:helm.sh/v3:Release", {"chart": "x"})
    found.add("urn:deleted", DEPLOYMENT, None)
    assert found.objects == {}
    assert kubernetes_object(DEPLOYMENT, {"kind": "Deployment"}) == {"kind": "Deployment"}


def test_a_hidden_value_refuses_every_decision_and_says_why_in_its_repr() -> None:
    hidden = Hidden("Pod.spec.x", "not known until the update")
    decisions = [
        lambda: hidden == "x",
        lambda: bool(hidden),
        lambda: "a" in hidden,  # pyright: ignore[reportOperatorIssue]
        lambda: list[object](hidden),  # pyright: ignore[reportArgumentType]
        lambda: hidden.get("x"),
        lambda: {hidden},
        lambda: hidden.startswith("x"),
        lambda: str(hidden),
        lambda: f"{hidden}",
    ]
    for decide in decisions:
        with pytest.raises(NotKnownYet, match=r"^Pod\.spec\.x is not known until the update$"):
            decide()
    assert repr(hidden) == "<Pod.spec.x: not known until the update>"


def test_an_object_rule_that_needs_an_unknown_is_kept_apart_for_the_update() -> None:
    objects = local_objects()
    the_deployment(objects)["spec"]["template"]["spec"]["containers"][0]["image"] = UNKNOWN
    found = registered(objects).findings()
    assert found.broken == []
    assert [p.split(":")[0] for p in found.not_known_yet] == ["image_pinned_by_digest"]


def test_a_fleet_rule_that_needs_an_unknown_stays_broken() -> None:
    """Nothing checks the whole fleet again during the update, so it cannot wait for it."""
    objects = local_objects()
    the_deployment(objects)["metadata"]["namespace"] = UNKNOWN
    found = registered(objects).findings()
    assert any(p.startswith("default_deny_everywhere: cannot be checked: ") for p in found.broken)


def transform_args(type_token: str, props: dict[str, Any]) -> pulumi.ResourceTransformArgs:
    return pulumi.ResourceTransformArgs(
        custom=True, type_=type_token, name="x", props=props, opts=pulumi.ResourceOptions()
    )


def registered_in_update(obj: dict[str, Any]) -> dict[str, Any]:
    """`obj` as a transform gets it during an update: through the SDK's own deserializer (as
    pulumi/runtime/_callbacks.py does), which lifts a secret's mark to what holds it."""
    wire = struct_pb2.Struct()
    wire.update(obj)
    dry_run = settings.SETTINGS.dry_run
    settings.SETTINGS.dry_run = False
    try:
        return dict(rpc.deserialize_properties(wire))
    finally:
        settings.SETTINGS.dry_run = dry_run


def wire_secret(value: object) -> dict[str, object]:
    """A secret as the engine sends it to a transform."""
    return {"4dabf18193072939515e22adb298388d": "1b47061264138c4ac30d75fd1eb44270", "value": value}


def test_the_gate_lets_a_compliant_object_through_unchanged() -> None:
    gate = RegistrationGate()
    for obj in local_objects():
        props = registered_in_update(obj)
        assert gate(transform_args(f"kubernetes:x/v1:{obj['kind']}", props)) is None
    assert gate.checked == len(local_objects()) and gate.refused == []
    hash(gate)  # the SDK keeps each transform as a dict key


def test_the_gate_refuses_an_object_that_breaks_a_rule() -> None:
    objects = local_objects()
    deployment = the_deployment(objects)
    deployment["spec"]["template"]["spec"]["containers"][0]["image"] = "ghcr.io/x/server:latest"
    gate = RegistrationGate()
    with pytest.raises(RefusedByPolicy, match=r"^image_pinned_by_digest: Deployment llamafleet-"):
        gate(transform_args(DEPLOYMENT, registered_in_update(deployment)))
    (line,) = gate.refused
    assert line.startswith("image_pinned_by_digest: ") and "server:latest" in line


def test_the_gate_checks_a_secret_by_its_value() -> None:
    """One secret env value makes the SDK mark the whole spec secret; the object still passes
    on its values (the preview passed it: no rule reads env)."""
    deployment = the_deployment(local_objects())
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    container.setdefault("env", []).append({"name": "TOKEN", "value": wire_secret("s3cr3t")})
    props = registered_in_update(deployment)
    assert rpc.is_rpc_secret(props["spec"]), "the SDK lifts the mark to the whole spec"
    assert RegistrationGate()(transform_args(DEPLOYMENT, props)) is None


def test_the_gate_never_shows_a_secret_in_its_lines() -> None:
    deployment = the_deployment(local_objects())
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    container["image"] = wire_secret("registry.example/private:latest")
    gate = RegistrationGate()
    with pytest.raises(RefusedByPolicy) as refused:
        gate(transform_args(DEPLOYMENT, registered_in_update(deployment)))
    assert "private:latest" not in str(refused.value) and "private" not in "".join(gate.refused)
    assert "image '[secret]' is not pinned by digest" in gate.refused[0]


@pytest.mark.parametrize(
    ("containers", "why"),
    [([None], "AttributeError in the rules: cannot be checked"), (Unknown(), "not known")],
    ids=["none-in-a-list", "unknown"],
)
def test_the_gate_refuses_what_it_cannot_read(containers: object, why: str) -> None:
    """Fail closed, with the reason in the line: a shape no rule expects, a value unknown."""
    deployment = the_deployment(local_objects())
    deployment["spec"]["template"]["spec"]["containers"] = containers
    gate = RegistrationGate()
    with pytest.raises(RefusedByPolicy, match=why):
        gate(transform_args(DEPLOYMENT, deployment))


def test_the_gate_leaves_other_resources_alone() -> None:
    gate = RegistrationGate()
    assert gate(transform_args("pulumi-python:dynamic:Resource", {"kind": "Deployment"})) is None
    assert gate(transform_args("pulumi:providers:kubernetes", {"kubeconfig": "x"})) is None
    assert gate.checked == 0
