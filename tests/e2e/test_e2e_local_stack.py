"""The project's real `local` stack through the real engine, against the test control plane.

preview -> up -> objects in the API server -> pods only on the allowed tier's kwok nodes -> the
team's ResourceQuota rejects a pod over it -> second up changes nothing -> one model's replicas
changed: only that model's objects change -> destroy leaves nothing. API keys never appear in
plain text in the state. The project is run from a temporary copy of its Pulumi files, so the
repository's stack file and `.pulumi/` state stay untouched.
"""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from e2e_support import REPO, TEST_TIERS, VENV, Cluster
from pulumi import automation as auto

from infra import engine
from infra.engine import missing_engine_binaries

pytestmark = pytest.mark.e2e

STACK = "local"
TEAM_NS = "llamafleet-demo"
LINKED = ("infra", "components", "modelsync", "policy")


def _local_settings() -> dict[str, Any]:
    return yaml.safe_load((REPO / "stacks" / f"Pulumi.{STACK}.yaml").read_text())["config"]


@pytest.fixture
def project(
    tmp_path: Path, engine_bin: Path, local_cluster: Cluster, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Path]:
    missing = missing_engine_binaries(("pulumi-resource-random",))
    if missing:
        pytest.skip(f"Pulumi engine incomplete: {'; '.join(missing)}")
    work = tmp_path / "project"
    (work / "stacks").mkdir(parents=True)
    (work / "Pulumi.yaml").write_text((REPO / "Pulumi.yaml").read_text())
    stack_file = REPO / "stacks" / f"Pulumi.{STACK}.yaml"
    (work / "stacks" / stack_file.name).write_text(stack_file.read_text())
    for name in LINKED:
        if (REPO / name).exists():
            (work / name).symlink_to(REPO / name)
    (work / ".venv").symlink_to(VENV)
    monkeypatch.setenv("KUBECONFIG", str(local_cluster.kubeconfig))
    monkeypatch.setenv("PULUMI_HOME", str(tmp_path / "pulumi-home"))
    monkeypatch.setenv("PULUMI_CONFIG_PASSPHRASE", "e2e-local-stack")
    monkeypatch.delenv("PULUMI_CONFIG_PASSPHRASE_FILE", raising=False)
    yield work


def _tier_nodes(tier: str) -> set[str]:
    return {f"{t['name']}-{i}" for t in TEST_TIERS if t["name"] == tier for i in range(t["count"])}


def _wait_running(cluster: Cluster, selector: str, want: int, timeout: float = 120) -> list[Any]:
    deadline = time.monotonic() + timeout
    pods: list[Any] = []
    while time.monotonic() < deadline:
        pods = cluster.get("pods", "-A", "-l", selector)["items"]
        running = [p for p in pods if p["status"].get("phase") == "Running"]
        if len(running) >= want:
            return running
        time.sleep(1)
    raise AssertionError(f"{selector}: fewer than {want} Running pods: {pods}")


def _changed(stack: auto.Stack) -> list[tuple[str, str, str]]:
    """(op, type, name) of every resource a preview would touch."""
    seen: list[tuple[str, str, str]] = []

    def on_event(event: auto.EngineEvent) -> None:
        pre = event.resource_pre_event
        if pre is None or pre.metadata.op in (auto.OpType.SAME, auto.OpType.READ):
            return
        urn = pre.metadata.urn
        seen.append((str(pre.metadata.op.value), pre.metadata.type, urn.rsplit("::", 1)[-1]))

    stack.preview(on_event=on_event)
    return seen


def test_local_stack_up_noop_change_destroy(project: Path, local_cluster: Cluster) -> None:
    settings = _local_settings()
    models: dict[str, Any] = settings["llamafleet:models"]

    planned = engine.preview(STACK, project)
    assert set(planned) == {"create"}

    engine.up(STACK, project)

    # Objects are in the API server (accepted by its server-side validation and admission).
    for kind in ("deployment", "service", "resourcequota", "limitrange", "networkpolicy"):
        assert local_cluster.get(kind, "-n", TEAM_NS)["items"], kind

    # Each model's pods run on its allowed tier's kwok nodes only.
    for name, model in models.items():
        want = int(model["replicas"]["min"])
        pods = _wait_running(local_cluster, f"llamafleet.io/model={name}", want)
        allowed = set().union(*(_tier_nodes(t) for t in model["tiers"]))
        assert {p["spec"]["nodeName"] for p in pods} <= allowed, name

    # API keys are secrets: in the cluster, never in plain text in the state.
    keys = local_cluster.get("secrets", "-n", TEAM_NS)["items"]
    values = [
        base64.b64decode(v).decode()
        for s in keys
        if s["metadata"]["name"].startswith("llamafleet-")
        for v in (s.get("data") or {}).values()
    ]
    assert values
    state = "".join(p.read_text() for p in (project / ".pulumi").rglob("*.json"))
    for value in values:
        for line in value.splitlines():
            if len(line) >= 16:
                assert line not in state

    # The team's quota rejects a pod over it.
    quota_cpus = int(settings["llamafleet:tenants"]["demo"]["quota"]["cpus"])
    over = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "over-quota", "namespace": TEAM_NS},
        "spec": {
            # Compliant with the namespace's "restricted" Pod Security level, so that only the
            # quota can be what rejects it.
            "securityContext": {
                "runAsNonRoot": True,
                "runAsUser": 10001,
                "seccompProfile": {"type": "RuntimeDefault"},
            },
            "containers": [
                {
                    "name": "c",
                    "image": "example.invalid/never-pulled:1",
                    "securityContext": {
                        "allowPrivilegeEscalation": False,
                        "capabilities": {"drop": ["ALL"]},
                    },
                    "resources": {
                        "limits": {"cpu": str(quota_cpus + 1), "memory": "1Gi"},
                        "requests": {"cpu": str(quota_cpus + 1), "memory": "1Gi"},
                    },
                }
            ],
        },
    }
    rejected = local_cluster.apply(over)
    assert rejected.returncode != 0
    assert "exceeded quota" in rejected.stderr, rejected.stderr

    # A second up changes nothing; the drift check agrees.
    assert engine.up(STACK, project) == {}
    assert engine.main(["preview", STACK, "--work-dir", str(project), "--expect-no-changes"]) == 0

    # Change one model's replicas: only that model's objects change.
    name = next(iter(models))
    stack_file = project / "stacks" / f"Pulumi.{STACK}.yaml"
    doc = yaml.safe_load(stack_file.read_text())
    replicas = doc["config"]["llamafleet:models"][name]["replicas"]
    replicas["min"] = int(replicas["min"]) + 1
    replicas["max"] = max(int(replicas["max"]), replicas["min"])
    stack_file.write_text(yaml.safe_dump(doc, sort_keys=False))
    changed = _changed(engine.open_stack(STACK, project))
    print("changed by the replicas edit:", json.dumps(changed))
    # The Deployment leaves spec.replicas to its autoscaler (ignore_changes), so the replicas
    # range lands on that model's autoscaler: an in-place update of that model's objects only.
    assert changed
    assert all(op == "update" for op, _, _ in changed)
    assert all(name in n for _, _, n in changed), changed

    engine.destroy(STACK, project, remove=True)
    left = local_cluster.kubectl("get", "namespace", TEAM_NS, "-o", "json", check=False)
    if left.returncode == 0:
        assert json.loads(left.stdout)["status"]["phase"] == "Terminating"
    else:
        assert "NotFound" in left.stderr
