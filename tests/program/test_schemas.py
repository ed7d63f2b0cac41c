"""Every rendered object against the real Kubernetes OpenAPI schemas (strict: unknown fields
fail), and CRD objects against their CRDs' schemas, made strict the same way."""

from __future__ import annotations

import copy
from functools import cache
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
from cloudcoil.models.keda.v1alpha1 import ScaledObject
from cloudcoil.models.prometheus_operator.v1 import ServiceMonitor
from clusters.metallb_schema import METALLB_API, metallb_errors
from pydantic import BaseModel
from stack_renders import rendered_stack

from infra.render import Rendered

KUBERNETES_VERSION = "1.33"
CRD_MODELS: dict[tuple[str, str], type[BaseModel]] = {
    ("keda.sh/v1alpha1", "ScaledObject"): ScaledObject,
    ("monitoring.coreos.com/v1", "ServiceMonitor"): ServiceMonitor,
}


def _forbid_unknown_fields(schema: Any) -> Any:
    if isinstance(schema, dict):
        if "properties" in schema and "additionalProperties" not in schema:
            schema["additionalProperties"] = False
        for value in schema.values():
            _forbid_unknown_fields(value)
    elif isinstance(schema, list):
        for value in schema:
            _forbid_unknown_fields(value)
    return schema


@cache
def crd_validator(api_version: str, kind: str) -> jsonschema.Draft202012Validator:
    model = CRD_MODELS[(api_version, kind)]
    schema = model.model_json_schema(by_alias=True, mode="validation")
    return jsonschema.Draft202012Validator(_forbid_unknown_fields(schema))


def schema_errors(obj: dict[str, Any]) -> list[str]:
    key = (obj["apiVersion"], obj["kind"])
    if obj["apiVersion"] == METALLB_API:
        return metallb_errors(obj)
    if key in CRD_MODELS:
        return [
            f"{list(e.absolute_path)}: {e.message}" for e in crd_validator(*key).iter_errors(obj)
        ]
    try:
        kubernetes_validate.validate(obj, KUBERNETES_VERSION, strict=True)
    except kubernetes_validate.ValidationError as exc:
        return [str(exc)]
    return []


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


def test_the_schema_check_rejects_unknown_and_mistyped_fields() -> None:
    prod = rendered_stack("prod")
    deployment = _first(prod, "Deployment")
    deployment["spec"]["template"]["spec"]["containers"][0]["readinessProbes"] = {}
    assert schema_errors(deployment)
    deployment = _first(prod, "Deployment")
    deployment["spec"]["replicas"] = "two"
    assert schema_errors(deployment)


@pytest.mark.parametrize("kind", ["ScaledObject", "ServiceMonitor"])
def test_the_crd_check_rejects_unknown_fields(kind: str) -> None:
    obj = _first(rendered_stack("prod"), kind)
    assert schema_errors(obj) == []
    obj["spec"]["minReplicas"] = 1  # an HPA field, not a KEDA or ServiceMonitor one
    assert schema_errors(obj)
