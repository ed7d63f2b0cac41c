"""Every rendered object against the real Kubernetes OpenAPI schemas (strict: unknown fields
fail), and CRD objects against their CRDs' schemas, made strict the same way."""

from __future__ import annotations

import copy
from typing import Any

import pytest
from support.schemas import name_errors, schema_errors
from support.stack_renders import rendered_stack

from llamafleet.command.render import Rendered


def test_every_rendered_object_matches_its_schema(rendered: Rendered) -> None:
    objects = rendered.kubernetes_objects
    assert objects
    failures = {
        f"{o['kind']} {o['metadata'].get('namespace', '')}/{o['metadata']['name']}": errors
        for o in objects
        if (errors := schema_errors(o))
    }
    assert failures == {}


def _first(rendered: Rendered, kind: str) -> dict[str, Any]:
    return copy.deepcopy(next(o for o in rendered.kubernetes_objects if o["kind"] == kind))


def test_every_rendered_name_and_label_is_valid(rendered: Rendered) -> None:
    failures = {
        f"{o['kind']} {o['metadata'].get('namespace', '')}/{o['metadata']['name']}": errors
        for o in rendered.kubernetes_objects
        if (errors := name_errors(o))
    }
    assert failures == {}


def test_the_name_check_rejects_bad_names_and_labels() -> None:
    service = _first(rendered_stack("prod"), "Service")
    assert name_errors(service) == []
    for mutate in (
        lambda o: o["metadata"].update(name="7b-" + o["metadata"]["name"]),  # DNS-1035
        lambda o: o["metadata"].update(name="x" * 64),
        lambda o: o["metadata"]["labels"].update({"tier": "a" * 64}),
        lambda o: o["metadata"]["labels"].update({"tier": "ünï"}),
    ):
        bad = copy.deepcopy(service)
        mutate(bad)
        assert name_errors(bad), bad["metadata"]


def test_the_schema_check_rejects_unknown_and_mistyped_fields() -> None:
    prod = rendered_stack("prod")
    deployment = _first(prod, "Deployment")
    deployment["spec"]["template"]["spec"]["containers"][0]["readinessProbes"] = {}
    assert schema_errors(deployment)
    deployment = _first(prod, "Deployment")
    deployment["spec"]["replicas"] = "two"
    assert schema_errors(deployment)


@pytest.mark.parametrize(
    ("stack", "kind"),
    [("prod", "ScaledObject"), ("prod", "ServiceMonitor"), ("onprem", "Certificate")],
)
def test_the_crd_check_rejects_unknown_fields(stack: str, kind: str) -> None:
    obj = _first(rendered_stack(stack), kind)
    assert schema_errors(obj) == []
    obj["spec"]["minReplicas"] = 1  # an HPA field, not a KEDA or ServiceMonitor one
    assert schema_errors(obj)
