"""A strict JSON schema for the MetalLB objects llamafleet emits (metallb.io/v1beta1
IPAddressPool and L2Advertisement): the spec fields of MetalLB's CRDs, unknown fields refused.
No schema package for MetalLB is available offline, so this is written from its API reference."""

from __future__ import annotations

from functools import cache
from typing import Any

import jsonschema

METALLB_API = "metallb.io/v1beta1"
STRINGS = {"type": "array", "items": {"type": "string"}}
SELECTORS = {"type": "array", "items": {"type": "object"}}
METADATA = {
    "type": "object",
    "required": ["name", "namespace"],
    "properties": {"name": {"type": "string"}, "namespace": {"type": "string"}},
    "additionalProperties": False,
}


def _crd(spec: dict[str, Any], required: list[str]) -> dict[str, Any]:
    return {
        "type": "object",
        "required": ["apiVersion", "kind", "metadata", "spec"],
        "properties": {
            "apiVersion": {"const": METALLB_API},
            "kind": {"type": "string"},
            "metadata": METADATA,
            "spec": {
                "type": "object",
                "required": required,
                "properties": spec,
                "additionalProperties": False,
            },
        },
        "additionalProperties": False,
    }


METALLB = {
    "IPAddressPool": _crd(
        {
            "addresses": STRINGS,
            "autoAssign": {"type": "boolean"},
            "avoidBuggyIPs": {"type": "boolean"},
            "serviceAllocation": {"type": "object"},
        },
        ["addresses"],
    ),
    "L2Advertisement": _crd(
        {
            "ipAddressPools": STRINGS,
            "ipAddressPoolSelectors": SELECTORS,
            "nodeSelectors": SELECTORS,
            "interfaces": STRINGS,
        },
        [],
    ),
}


@cache
def _validator(kind: str) -> jsonschema.Draft202012Validator:
    return jsonschema.Draft202012Validator(METALLB[kind])


def metallb_errors(obj: dict[str, Any]) -> list[str]:
    if obj["kind"] not in METALLB:
        return [f"no schema for {METALLB_API} {obj['kind']}"]
    return [
        f"{list(e.absolute_path)}: {e.message}" for e in _validator(obj["kind"]).iter_errors(obj)
    ]
