"""Kubernetes object fields as plain data, handed to pulumi_kubernetes unchanged."""

from __future__ import annotations

from typing import Any


def manifest(fields: dict[str, Any]) -> Any:
    """Pass Kubernetes-native (camelCase) fields to a pulumi_kubernetes argument.

    The SDK accepts the API's own field names as well as its snake_case TypedDicts, but types only
    the latter. The specs here are built in the API's names so they read like the manifests they
    become, and tests validate every rendered object against the real Kubernetes OpenAPI schemas,
    a stricter check than the TypedDicts.
    """
    return fields
