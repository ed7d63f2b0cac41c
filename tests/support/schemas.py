"""Strict schema checks for rendered objects: the real Kubernetes OpenAPI schemas (unknown
fields fail), CRD objects against their CRDs' schemas made strict the same way, and MetalLB's."""

from __future__ import annotations

import re
from functools import cache
from typing import Any

import jsonschema
import kubernetes_validate
from cloudcoil.models.cert_manager.v1 import Certificate
from cloudcoil.models.keda.v1alpha1 import ScaledObject
from cloudcoil.models.prometheus_operator.v1 import PodMonitor, PrometheusRule, ServiceMonitor
from cloudcoil.models.prometheus_operator.v1alpha1 import AlertmanagerConfig
from pydantic import BaseModel

from support.metallb_schema import METALLB_API, metallb_errors

KUBERNETES_VERSION = "1.33"
CRD_MODELS: dict[tuple[str, str], type[BaseModel]] = {
    ("keda.sh/v1alpha1", "ScaledObject"): ScaledObject,
    ("monitoring.coreos.com/v1", "ServiceMonitor"): ServiceMonitor,
    ("monitoring.coreos.com/v1", "PodMonitor"): PodMonitor,
    ("monitoring.coreos.com/v1", "PrometheusRule"): PrometheusRule,
    ("monitoring.coreos.com/v1alpha1", "AlertmanagerConfig"): AlertmanagerConfig,
    ("cert-manager.io/v1", "Certificate"): Certificate,
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


# Kubernetes name and label syntax, which the OpenAPI schemas do not carry
# (https://kubernetes.io/docs/concepts/overview/working-with-objects/names/, .../labels/).
_DNS_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$")
_DNS_1123_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_DNS_1035_LABEL = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")
_LABEL_PART = re.compile(r"^[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$")
# Kinds whose name is a DNS label (Services: DNS-1035), not a DNS subdomain.
_LABEL_NAMED = {"Service": _DNS_1035_LABEL, "Namespace": _DNS_1123_LABEL}


def name_errors(obj: dict[str, Any]) -> list[str]:
    """Why `obj`'s name, namespace or labels would be refused by the API server; empty if not."""
    metadata = obj.get("metadata", {})
    errors: list[str] = []
    name = str(metadata.get("name", ""))
    rule = _LABEL_NAMED.get(obj.get("kind", ""), _DNS_SUBDOMAIN)
    limit = 253 if rule is _DNS_SUBDOMAIN else 63
    if len(name) > limit or not rule.match(name):
        errors.append(f"name {name!r} is not a valid {obj.get('kind')} name")
    namespace = metadata.get("namespace")
    if namespace is not None and (len(namespace) > 63 or not _DNS_1123_LABEL.match(namespace)):
        errors.append(f"namespace {namespace!r} is not a DNS label")
    for key, value in (metadata.get("labels") or {}).items():
        prefix, _, label = str(key).rpartition("/")
        bad_prefix = bool(prefix) and not _DNS_SUBDOMAIN.match(prefix)
        if bad_prefix or len(label) > 63 or not _LABEL_PART.match(label):
            errors.append(f"label key {key!r} is invalid")
        if value and (len(str(value)) > 63 or not _LABEL_PART.match(str(value))):
            errors.append(f"label {key}={value!r}: not a valid label value")
    return errors
