"""Every Kubernetes object the cluster components emit, against the strict schemas: the
Kubernetes OpenAPI ones (shared with tests/program) and MetalLB's (metallb_schema.py)."""

from __future__ import annotations

import copy
from typing import Any

import pytest
from support.metallb_schema import METALLB_API, metallb_errors
from support.schemas import schema_errors

from llamafleet.command.render import is_kubernetes_object, kubernetes_object

from .conftest import declared_stack


def errors(obj: dict[str, Any]) -> list[str]:
    if obj["apiVersion"] == METALLB_API:
        return metallb_errors(obj)
    return schema_errors(obj)


def cluster_objects(stack: str) -> list[dict[str, Any]]:
    return [kubernetes_object(d) for d in declared_stack(stack) if is_kubernetes_object(d)]


@pytest.mark.parametrize("stack", ["onprem", "hybrid", "prod", "aws-dev"])
def test_every_cluster_object_matches_its_schema(stack: str) -> None:
    objects = cluster_objects(stack)
    failures = {
        f"{o['kind']} {o['metadata'].get('namespace', '')}/{o['metadata']['name']}": found
        for o in objects
        if (found := errors(o))
    }
    assert failures == {}


def test_onprem_emits_node_patches_and_metallb_objects() -> None:
    kinds = {o["kind"] for o in cluster_objects("onprem")}
    assert kinds == {"Node", "IPAddressPool", "L2Advertisement"}


@pytest.mark.parametrize("kind", ["Node", "IPAddressPool", "L2Advertisement"])
def test_the_checks_reject_unknown_fields(kind: str) -> None:
    obj = copy.deepcopy(next(o for o in cluster_objects("onprem") if o["kind"] == kind))
    assert errors(obj) == []
    if kind == "Node":
        obj["metadata"]["lables"] = {}
    else:
        obj["spec"]["addressPools"] = ["typo"]
    assert errors(obj)
