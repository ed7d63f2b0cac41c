"""The security settings every llamafleet pod and container gets (Kubernetes "restricted")."""

from __future__ import annotations

from typing import Any

# The unprivileged UID/GID the images run as (USER 10001 in images/*/Dockerfile*).
RUN_AS = 10001


def pod_security_context() -> dict[str, Any]:
    """The pod's securityContext: UID, GID and fsGroup 10001, non-root, RuntimeDefault
    seccomp."""
    return {
        "runAsNonRoot": True,
        "runAsUser": RUN_AS,
        "runAsGroup": RUN_AS,
        "fsGroup": RUN_AS,
        "seccompProfile": {"type": "RuntimeDefault"},
    }


def container_security_context() -> dict[str, Any]:
    """A container's securityContext: non-root, unprivileged, no privilege escalation, every
    capability dropped, read-only root filesystem, RuntimeDefault seccomp."""
    return {
        "runAsNonRoot": True,
        "allowPrivilegeEscalation": False,
        "readOnlyRootFilesystem": True,
        "privileged": False,
        "capabilities": {"drop": ["ALL"]},
        "seccompProfile": {"type": "RuntimeDefault"},
    }


def restricted_namespace_labels() -> dict[str, str]:
    """Pod Security Admission enforces the same rules for anything else in the namespace."""
    return {
        "pod-security.kubernetes.io/enforce": "restricted",
        "pod-security.kubernetes.io/enforce-version": "latest",
    }
