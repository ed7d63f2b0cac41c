"""Strict schema checks for rendered objects: the real Kubernetes OpenAPI schemas (unknown
fields fail), CRD objects against their CRDs' schemas made strict the same way, and MetalLB's."""

from __future__ import annotations

from functools import cache
from typing import Any

import jsonschema
import kubernetes_validate
from cloudcoil.models.keda.v1alpha1 import ScaledObject
from cloudcoil.models.prometheus_operator.v1 import ServiceMonitor
from pydantic import BaseModel

from support.metallb_schema import METALLB_API, metallb_errors

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
    """Why `obj` does not match its kind's schema; empty when it does."""
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
