"""Helpers shared by the end-to-end tests (imported by conftest.py and the tests)."""

from __future__ import annotations

import json
import os
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
SCRIPTS = REPO / "scripts"
# The virtualenv the Pulumi programs run in (override to try other pinned SDK wheels).
VENV = Path(os.environ.get("LLAMAFLEET_E2E_VENV", str(REPO / ".venv")))
CACHE = Path(os.environ.get("LLAMAFLEET_CACHE", str(Path.home() / ".cache" / "llamafleet")))
BIN = CACHE / "bin"
CLUSTER_BINARIES = (
    "kube-apiserver",
    "kube-scheduler",
    "kube-controller-manager",
    "kubectl",
    "etcd",
    "kwok",
)
ENGINE_BINARIES = (
    "pulumi",
    "pulumi-language-python",
    "pulumi-resource-kubernetes",
)

# Ports of the test cluster: apart from a developer's `scripts/local-cluster up` (16443/12379).
TEST_API_PORT = int(os.environ.get("LLAMAFLEET_E2E_API_PORT", "26443"))
TEST_ETCD_PORT = int(os.environ.get("LLAMAFLEET_E2E_ETCD_PORT", "22379"))

# Tiers of the test cluster, in the format scripts/local-cluster takes.
TEST_TIERS: list[dict[str, Any]] = [
    {
        "name": "cpu-small",
        "count": 2,
        "cpu": "4",
        "memory": "8Gi",
        "labels": {"llamafleet.io/isa": "x86-64-v2"},
        "taints": [],
        "gpus": 0,
    },
    {
        "name": "cpu-big",
        "count": 1,
        "cpu": "32",
        "memory": "128Gi",
        "labels": {"llamafleet.io/isa": "x86-64-v4"},
        "taints": [],
        "gpus": 0,
    },
    {
        "name": "gpu-l4",
        "count": 1,
        "cpu": "16",
        "memory": "64Gi",
        "labels": {"llamafleet.io/isa": "x86-64-v3"},
        "taints": [],
        "gpus": 1,
    },
]


def missing_binaries(names: tuple[str, ...]) -> list[str]:
    return [b for b in names if not (BIN / b).is_file()]


@dataclass(frozen=True)
class Cluster:
    kubeconfig: Path
    data_dir: Path
    env: dict[str, str]

    def kubectl(
        self, *args: str, check: bool = True, stdin: str | None = None
    ) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(BIN / "kubectl"), "--kubeconfig", str(self.kubeconfig), *args],
            input=stdin,
            capture_output=True,
            text=True,
            check=check,
            timeout=120,
        )

    def get(self, *args: str) -> dict[str, Any]:
        out = self.kubectl("get", "-o", "json", *args).stdout
        return json.loads(out)

    def apply(self, obj: dict[str, Any], *extra: str) -> subprocess.CompletedProcess[str]:
        return self.kubectl("apply", "-f", "-", *extra, stdin=json.dumps(obj), check=False)
