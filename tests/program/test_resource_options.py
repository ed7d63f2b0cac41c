"""The resource options the README promises, as the program registers them under the mocks:
pods wait for the model store and the pinned models, replicas are the autoscaler's, and a sync
of other bytes stops the update before any Deployment is declared."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pulumi
import pytest
import yaml
from pulumi.runtime import mocks as pulumi_mocks

from llamafleet.command.mock_run import Declared, run_program
from llamafleet.command.render import Rendered
from llamafleet.program.stack import main as program_main
from llamafleet.settings.load import engine_config, stack_file

STORE = "llamafleet:models:ModelStore"
MANIFEST = "pulumi-python:dynamic/models:ModelManifest"
SERVICE = "llamafleet:serving:InferenceService"
DEPLOYMENT = "kubernetes:apps/v1:Deployment"
HPA = "kubernetes:autoscaling/v2:HorizontalPodAutoscaler"
SCALED_OBJECT = "kubernetes:keda.sh/v1alpha1:ScaledObject"


def descendants(declared: list[Declared], root: Declared) -> list[Declared]:
    found: list[Declared] = []
    frontier = {root.urn}
    for resource in declared:  # registration order: a parent comes before its children
        if resource.parent in frontier:
            found.append(resource)
            frontier.add(resource.urn)
    return found


def test_pods_wait_for_the_model_store_and_the_synced_models(rendered: Rendered) -> None:
    declared = rendered.declared
    by_urn = {d.urn: d for d in declared}
    (store,) = [d for d in declared if d.type == STORE]
    store_resources = {d.urn for d in descendants(declared, store) if d.custom}
    manifests = {d.urn for d in declared if d.type == MANIFEST}
    deployments = [d for d in declared if d.type == DEPLOYMENT and by_urn[d.parent].type == SERVICE]
    assert deployments and store_resources
    for deployment in deployments:
        # The Deployment registers only once its component has, and the component waits for
        # what its depends_on names (the SDK expands a component into its resources).
        service = by_urn[deployment.parent]
        assert service.type == SERVICE, deployment.name
        waits_for = set(service.depends_on)
        assert store_resources <= waits_for, deployment.name
        assert manifests <= waits_for, deployment.name


def test_stacks_with_model_sources_wire_the_pin_check() -> None:
    """The control for the test above: a stack that syncs has a manifest to wait for."""
    declared = Rendered(
        run_program(program_main, "local", engine_config(stack_file("local")))
    ).declared
    assert [d.type for d in declared].count(MANIFEST) == 1


def test_deployment_replicas_are_left_to_the_autoscaler(rendered: Rendered) -> None:
    """Every Deployment an autoscaler targets (the models' and the gateway's) leaves its
    replica count to it; one none targets (the gateway's Redis) keeps its own."""
    declared = rendered.declared
    targeted = {
        (d.parent, d.inputs["spec"]["scaleTargetRef"]["name"])
        for d in declared
        if d.type in (HPA, SCALED_OBJECT)
    }
    deployments = [d for d in declared if d.type == DEPLOYMENT]
    assert len({d.parent for d in deployments}) > 1  # models' and gateways'
    for deployment in deployments:
        scaled = (deployment.parent, deployment.inputs["metadata"]["name"]) in targeted
        # Without it every `up` would reset what KEDA or the HPA scaled to.
        expected = ("spec.replicas",) if scaled else ()
        assert deployment.ignore_changes == expected, deployment.name
        assert scaled or deployment.inputs["spec"]["replicas"] == 1, deployment.name


def _entry(digest: str) -> dict[str, Any]:
    """A manifest entry as the ModelSync provider outputs one, for `digest` (sha256:<hex>)."""
    hex_digest = digest.removeprefix("sha256:")
    return {"digest": digest, "sizeBytes": 1, "key": f"models/sha256/{hex_digest}.gguf"}


def _synced_other_bytes(args: pulumi_mocks.MockResourceArgs) -> dict[str, Any]:
    if args.typ == MANIFEST:
        return {"manifest": {name: _entry("sha256:" + "e" * 64) for name in args.inputs["models"]}}
    return {}


def test_a_synced_digest_other_than_the_pinned_one_stops_the_update() -> None:
    seen: list[Declared] = []
    with pytest.raises(pulumi.RunError) as raised:
        run_program(
            program_main,
            "local",
            engine_config(stack_file("local")),
            preview=False,
            computed=_synced_other_bytes,
            declared=seen,
        )
    (line,) = str(raised.value).splitlines()
    assert line.startswith(
        "stacks/Pulumi.local.yaml: llamafleet:models.gemma3-270m.digest: the stack pins sha256:"
    ), line
    assert f"but its source synced sha256:{'e' * 64}" in line
    types = {d.type for d in seen}
    assert MANIFEST in types  # the sync ran ...
    assert SERVICE not in types and DEPLOYMENT not in types  # ... and no pod was declared


def test_the_pinned_digest_lets_the_update_through() -> None:
    """The control: the same run with the pinned bytes declares the Deployments."""
    pinned = "sha256:a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818"

    def synced_pinned(args: pulumi_mocks.MockResourceArgs) -> dict[str, Any]:
        if args.typ == MANIFEST:
            return {"manifest": {name: _entry(pinned) for name in args.inputs["models"]}}
        return {}

    declared = run_program(
        program_main,
        "local",
        engine_config(stack_file("local")),
        preview=False,
        computed=synced_pinned,
    )
    assert any(d.type == DEPLOYMENT for d in declared)


PROTECTED_BY_DEFAULT = {
    "aws:s3/bucket:Bucket",  # the models other stacks share
    "aws:kms/key:Key",  # the store's and the cluster's keys: their data is unreadable without
    "aws:eks/cluster:Cluster",
}


@pytest.mark.parametrize("stack", ["prod", "aws-dev", "hybrid"])
def test_the_bucket_its_key_and_the_eks_cluster_are_protected(stack: str) -> None:
    declared = run_program(program_main, stack, engine_config(stack_file(stack)))
    protected = {d.type for d in declared if d.protect}
    kinds = {d.type for d in declared} & PROTECTED_BY_DEFAULT
    assert kinds, stack
    assert protected == kinds, stack
    for resource in declared:
        if resource.type in PROTECTED_BY_DEFAULT:
            assert resource.protect, resource.name


def test_protection_is_settable_per_stack(tmp_path: Path) -> None:
    config = yaml.safe_load(stack_file("prod").read_text())["config"]
    config["llamafleet:modelStore"]["protect"] = False
    for cluster in config["llamafleet:clusters"].values():
        cluster["eks"]["protect"] = False
    file = tmp_path / "Pulumi.prod.yaml"
    file.write_text(yaml.safe_dump({"config": config}))
    declared = run_program(program_main, "prod", engine_config(file))
    assert [d.name for d in declared if d.protect] == []


def test_the_on_prem_bucket_is_not_protected_because_destroy_keeps_it() -> None:
    declared = run_program(program_main, "local", engine_config(stack_file("local")))
    assert [d.name for d in declared if d.protect] == []


def test_pulumi_never_deletes_an_hpa_and_its_deployment_owns_it() -> None:
    """Switching a cluster to KEDA removes the HPA from the program after the ScaledObject took
    it over (../shared/cases/c17): Pulumi must leave it to KEDA (retain_on_delete); Kubernetes
    deletes it with its Deployment when the model goes (ownerReferences, by uid)."""
    declared = run_program(program_main, "local", engine_config(stack_file("local")))
    by_urn = {d.urn: d for d in declared}
    hpas = [d for d in declared if d.type == HPA and by_urn[d.parent].type == SERVICE]
    assert hpas
    for hpa in hpas:
        assert hpa.retain_on_delete, hpa.name
        # Switching back from KEDA: the HPA replaces its ScaledObject, which goes first.
        scaled_object = hpa.name.removesuffix("-hpa") + "-scaledobject"
        assert f"name={scaled_object},type={SCALED_OBJECT}" in hpa.aliases
        assert hpa.delete_before_replace and hpa.replace_on_changes == ("kind",), hpa.name
        (deployment,) = [d for d in declared if d.type == DEPLOYMENT and d.parent == hpa.parent]
        assert by_urn[hpa.parent].type == SERVICE
        (owner,) = hpa.inputs["metadata"]["ownerReferences"]
        assert owner["kind"] == "Deployment"
        assert owner["name"] == deployment.inputs["metadata"]["name"]
        assert owner["uid"], "the Deployment's uid, from the API server"


def test_nothing_else_is_left_behind_on_delete(stack: str) -> None:
    """The control: retain_on_delete is the models' HPAs' alone (not the gateway's)."""
    declared = run_program(program_main, stack, engine_config(stack_file(stack)))
    by_urn = {d.urn: d for d in declared}
    retained = [d for d in declared if d.retain_on_delete]
    assert {(d.type, by_urn[d.parent].type) for d in retained} <= {(HPA, SERVICE)}
