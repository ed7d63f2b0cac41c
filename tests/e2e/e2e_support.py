"""Helpers shared by the end-to-end tests: the test cluster, the e2e stack, and `llamafleet` run
in a subprocess (the engine never runs in the pytest process, which may hold Pulumi's mocks)."""

from __future__ import annotations

import copy
import hashlib
import json
import os
import subprocess
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from support.tiny_llama_gguf import write_gguf

from llamafleet.command.local_tiers import node_tiers
from llamafleet.settings.load import load_stack_file, stack_file

REPO = Path(__file__).resolve().parents[2]
SCRIPTS = REPO / "scripts"
CACHE = Path(os.environ.get("LLAMAFLEET_CACHE", str(Path.home() / ".cache" / "llamafleet")))
BIN = CACHE / "bin"
LLAMAFLEET = Path(sys.executable).parent / "llamafleet"
CLUSTER_BINARIES = (
    "kube-apiserver",
    "kube-scheduler",
    "kube-controller-manager",
    "kubectl",
    "etcd",
    "kwok",
)
ENGINE_BINARIES = ("pulumi", "pulumi-resource-kubernetes", "pulumi-resource-pulumi-python")

# Ports of the test cluster: apart from a developer's `scripts/local-cluster up` (16443/12379).
TEST_API_PORT = int(os.environ.get("LLAMAFLEET_E2E_API_PORT", "26443"))
TEST_ETCD_PORT = int(os.environ.get("LLAMAFLEET_E2E_ETCD_PORT", "22379"))

E2E_STACK = "e2e"
TEAM_A, TEAM_B = "alpha", "beta"
# Synthetic models (tests/support/tiny_llama_gguf.py): the small one big enough that reading it
# shows in a process's I/O counters.
MODEL_ELEMENTS = {"small": 8 * 1024 * 1024, "big": 1024 * 1024, "gpu": 1024 * 1024}
CUDA_IMAGE = "localhost:5000/llamafleet/llama-server-cuda@sha256:" + "1" * 64


def digest_of(path: Path) -> str:
    return "sha256:" + hashlib.sha256(path.read_bytes()).hexdigest()


def e2e_config(models_dir: Path, store_endpoint: str) -> dict[str, Any]:
    """The e2e stack: the local stack's settings with three tiers (two CPU, one tainted GPU), a
    synthetic model per tier synced from `models_dir`, and two teams."""
    config: dict[str, Any] = copy.deepcopy(
        yaml.safe_load(stack_file("local").read_text())["config"]
    )
    cluster = config["llamafleet:clusters"]["local"]
    cluster["tiers"] = {
        "cpu-small": {
            "kind": "cpu",
            "isa": "x86-64-v2",
            "cpusPerNode": 4,
            "memoryPerNodeGib": 8,
            "nodes": {"min": 2, "max": 2},
        },
        "cpu-big": {
            "kind": "cpu",
            "isa": "avx512",
            "cpusPerNode": 32,
            "memoryPerNodeGib": 128,
            "nodes": {"min": 1, "max": 1},
        },
        "gpu-l4": {
            "kind": "gpu",
            "isa": "avx2",
            "cpusPerNode": 16,
            "memoryPerNodeGib": 64,
            "nodes": {"min": 1, "max": 1},
            "gpu": {"type": "nvidia-l4", "count": 1, "memoryGib": 24},
        },
    }
    store = config["llamafleet:modelStore"]
    store["endpointUrl"] = store_endpoint
    config["llamafleet:images"]["cuda"] = CUDA_IMAGE
    placement = {
        "small": {"tiers": ["cpu-small"], "replicas": {"min": 1, "max": 3}},
        "big": {"tiers": ["cpu-big"], "replicas": {"min": 1, "max": 2}},
        "gpu": {"tiers": ["gpu-l4"], "accelerator": "gpu", "replicas": {"min": 1, "max": 1}},
    }
    config["llamafleet:models"] = {}
    for name, elements in MODEL_ELEMENTS.items():
        path = write_gguf(models_dir / f"{name}.gguf", elements=elements)
        config["llamafleet:models"][name] = {
            "digest": digest_of(path),
            "sizeBytes": path.stat().st_size,
            "source": str(path),
            "gguf": {
                "architecture": "llama",
                "fileType": "Q4_K_M",
                "contextLength": 4096,
                "blockCount": 4,
                "headCountKv": 2,
                "keyLength": 32,
                "valueLength": 32,
                "vocabSize": 32000,
            },
            "contextLength": 1024,
            "parallel": 1,
            "cpus": 1,
            "cacheRamMib": 64,
            **placement[name],
        }
    config["llamafleet:tenants"] = {
        TEAM_A: {
            "models": ["small", "big", "gpu"],
            "apiKeys": ["k1", "k2"],
            "quota": {"cpus": 8, "memoryGib": 16, "gpus": 2, "pods": 8},
        },
        TEAM_B: {
            "models": ["small"],
            "apiKeys": ["k1"],
            "quota": {"cpus": 4, "memoryGib": 8, "pods": 4},
        },
    }
    return config


def small_config(models_dir: Path, store_endpoint: str) -> dict[str, Any]:
    """The e2e stack cut down to one team (TEAM_B) and the small model: quick to deploy."""
    config = e2e_config(models_dir, store_endpoint)
    del config["llamafleet:tenants"][TEAM_A]
    config["llamafleet:tenants"][TEAM_B]["models"] = ["small"]
    for name in ("big", "gpu"):
        del config["llamafleet:models"][name]
    return config


def local_config(store_endpoint: str) -> dict[str, Any]:
    """The repository's `local` stack (what `make up` deploys) with the test store's endpoint:
    the model's `source` is left as the file says, for the caller to point or drop."""
    config: dict[str, Any] = yaml.safe_load(stack_file("local").read_text())["config"]
    config["llamafleet:modelStore"]["endpointUrl"] = store_endpoint
    return config


def serve_cache(directory: Path) -> Path:
    """`directory` made a LLAMAFLEET_CACHE for `llamafleet serve`: the bootstrap's binaries
    (its kubectl) and scripts/gateway-venv's environment shared, its processes' state its own."""
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "bin").symlink_to(BIN)
    (BIN.parent / "gateway").mkdir(exist_ok=True)
    (directory / "gateway").symlink_to(BIN.parent / "gateway")
    return directory


def tiers_of(config: dict[str, Any], path: Path) -> list[dict[str, Any]]:
    """The stack's tiers as scripts/local-cluster's fake nodes (the same helper `make up` uses)."""
    path.write_text(yaml.safe_dump({"config": config}, sort_keys=False))
    return node_tiers(load_stack_file(path))


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


@dataclass
class Project:
    """A Pulumi project directory for one e2e stack, with the environment `llamafleet` runs in
    (backend and passphrase of its own, the test cluster, the test store's credentials)."""

    work_dir: Path
    stack: str
    env: dict[str, str]
    transcript: list[str] = field(default_factory=list[str])

    @property
    def stack_file(self) -> Path:
        return self.work_dir / "stacks" / f"Pulumi.{self.stack}.yaml"

    @property
    def state_dir(self) -> Path:
        return self.work_dir / ".state"

    def config(self) -> dict[str, Any]:
        document: dict[str, Any] = yaml.safe_load(self.stack_file.read_text())
        return document["config"]

    def write_config(self, config: dict[str, Any]) -> None:
        document: dict[str, Any] = yaml.safe_load(self.stack_file.read_text())
        document["config"] = config
        self.stack_file.write_text(yaml.safe_dump(document, sort_keys=False))

    def llamafleet(
        self,
        *args: str,
        after: Sequence[str] = (),
        check: bool = True,
        record: bool = True,
        timeout: float = 600,
    ) -> subprocess.CompletedProcess[str]:
        """`llamafleet ARGS... STACK AFTER... --work-dir WORK_DIR` in a subprocess; its output
        joins the transcript unless `record` is off (a command that prints keys)."""
        argv = [str(LLAMAFLEET), *args, self.stack, *after, "--work-dir", str(self.work_dir)]
        done = subprocess.run(
            argv, env=self.env, capture_output=True, text=True, check=False, timeout=timeout
        )
        if record:
            self.transcript += [done.stdout, done.stderr]
        if check and done.returncode != 0:
            raise AssertionError(
                f"{' '.join(args)} exited {done.returncode}:\n{done.stdout[-6000:]}\n"
                f"{done.stderr[-4000:]}"
            )
        return done

    def llamafleet_render(self, out: Path) -> None:
        """`llamafleet render` of this stack file (under mocks: no engine)."""
        subprocess.run(
            [str(LLAMAFLEET), "render", str(self.stack_file), "--out", str(out)],
            env=self.env,
            capture_output=True,
            check=True,
            timeout=300,
        )

    def pulumi(self, *args: str) -> subprocess.CompletedProcess[str]:
        """The CLI itself, on this project's backend (e.g. `stack export`)."""
        return subprocess.run(
            [str(BIN / "pulumi"), *args, "--stack", self.stack, "--non-interactive"],
            env=self.env,
            cwd=self.work_dir,
            capture_output=True,
            text=True,
            check=True,
            timeout=120,
        )


# `make_project(stack, config)` (the e2e conftest's fixture): a Project for a stack file.
ProjectFactory = Callable[[str, dict[str, Any]], Project]
