"""Run llamafleet's program plus one object a platform team might add, through `engine.preview`
or `engine.up` (the policy gate `llamafleet preview` and `up` use), in a process of its own:

    python tests/e2e/policy_driver.py OP STACK WORK_DIR EXTRA

OP: preview or up. EXTRA: `root` (a Deployment whose container may run as root), `unknown` (a
compliant Deployment whose image, by digest, comes from a resource not created until the update),
`unknown-tag` (the same, but the image that resource gives is a tag: it breaks a rule once known),
`known` (the digest given). Prints each policy violation as `policy: <line>` on stderr, then the
error's hint as `hint: <line>` if it has one, and exits 1, or prints the changes as JSON and
exits 0; the engine's output goes to stderr.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

import pulumi
import pulumi_kubernetes as k8s
from pulumi.dynamic import CreateResult, ResourceProvider
from pulumi.dynamic import Resource as DynamicResource

from llamafleet.command import engine
from llamafleet.components.manifest import manifest

DIGEST_REF = "registry.example/extra@sha256:" + "0" * 64
TAG_REF = "registry.example/extra:1.0"
EXTRA_NAME = "policy-extra"


class _Built(ResourceProvider):
    def create(self, props: dict[str, Any]) -> CreateResult:
        return CreateResult("built", {"ref": props["gives"], "gives": props["gives"]})


class BuiltImage(DynamicResource):
    """An image reference (`gives`) known only once the update has run (like a build's digest)."""

    ref: pulumi.Output[str]

    def __init__(self, name: str, gives: str) -> None:
        super().__init__(_Built(), name, {"ref": None, "gives": gives})


def container(image: pulumi.Input[str], run_as_non_root: bool) -> dict[str, Any]:
    return {
        "name": "extra",
        "image": image,
        "securityContext": {
            "runAsNonRoot": run_as_non_root,
            "runAsUser": 65532,
            "readOnlyRootFilesystem": True,
            "allowPrivilegeEscalation": False,
            "capabilities": {"drop": ["ALL"]},
            "seccompProfile": {"type": "RuntimeDefault"},
        },
        "resources": {
            "requests": {"cpu": "10m", "memory": "16Mi"},
            "limits": {"cpu": "10m", "memory": "16Mi"},
        },
        "readinessProbe": {"tcpSocket": {"port": 8080}},
        "livenessProbe": {"tcpSocket": {"port": 8080}},
    }


def extra_deployment(namespace: str, extra: str) -> None:
    provider = k8s.Provider(EXTRA_NAME, kubeconfig=Path(os.environ["KUBECONFIG"]).read_text())
    built = {"unknown": DIGEST_REF, "unknown-tag": TAG_REF}
    image = BuiltImage(f"{EXTRA_NAME}-{extra}", built[extra]).ref if extra in built else DIGEST_REF
    labels = {"app.kubernetes.io/name": EXTRA_NAME}
    k8s.apps.v1.Deployment(
        EXTRA_NAME,
        metadata={"name": EXTRA_NAME, "namespace": namespace, "labels": labels},
        spec=manifest(
            {
                "replicas": 1,
                "selector": {"matchLabels": labels},
                "template": {
                    "metadata": {"labels": labels},
                    "spec": {
                        "automountServiceAccountToken": False,
                        "containers": [container(image, run_as_non_root=extra != "root")],
                    },
                },
            }
        ),
        opts=pulumi.ResourceOptions(provider=provider),
    )
    k8s.networking.v1.NetworkPolicy(
        EXTRA_NAME,
        metadata={"name": EXTRA_NAME, "namespace": namespace},
        spec=manifest({"podSelector": {"matchLabels": labels}, "policyTypes": ["Ingress"]}),
        opts=pulumi.ResourceOptions(provider=provider),
    )


def main(op: str, stack: str, work_dir: str, extra: str, namespace: str) -> int:
    from llamafleet.program.stack import main as fleet  # noqa: PLC0415 (after the mocks' absence)

    def program() -> None:
        fleet()
        extra_deployment(namespace, extra)

    def show(line: str) -> None:
        print(line, file=sys.stderr)

    try:
        if op == "preview":
            changed = engine.preview(stack, Path(work_dir), show, program).changes
        else:
            changed = engine.up(stack, Path(work_dir), show, program)
    except engine.PolicyViolationError as exc:
        for problem in exc.problems:
            print(f"policy: {problem}", file=sys.stderr)
        if exc.hint:
            print(f"hint: {exc.hint}", file=sys.stderr)
        return 1
    print(json.dumps(changed))
    return 0


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:]))
