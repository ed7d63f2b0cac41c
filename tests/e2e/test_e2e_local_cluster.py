"""The local control plane itself: fake tier nodes, real scheduling, real admission."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest
from e2e_support import Cluster

pytestmark = pytest.mark.e2e


@pytest.fixture(autouse=True)
def own_namespaces(local_cluster: Cluster) -> Iterator[None]:
    """Each test's namespaces go afterwards: the cluster's capacity is shared with other tests."""
    yield
    for ns in ("e2e-placement", "e2e-gpu", "e2e-quota"):
        local_cluster.kubectl("delete", "namespace", ns, "--ignore-not-found", "--wait=true")


def _wait(predicate: Any, timeout: float = 60.0, every: float = 0.5) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value or time.monotonic() > deadline:
            return value
        time.sleep(every)


def _pods(cluster: Cluster, namespace: str, selector: str) -> list[dict[str, Any]]:
    return cluster.get("pods", "-n", namespace, "-l", selector)["items"]


def test_every_tier_node_is_ready_with_labels_taints_and_capacity(
    local_cluster: Cluster, test_tiers: list[dict[str, Any]]
) -> None:
    nodes = {n["metadata"]["name"]: n for n in local_cluster.get("nodes")["items"]}
    expected = {f"{t['name']}-{i}": t for t in test_tiers for i in range(t["count"])}
    assert set(expected) <= set(nodes)
    for name, tier in expected.items():
        node = nodes[name]
        labels = node["metadata"]["labels"]
        assert labels["llamafleet.io/tier"] == tier["name"]
        assert labels["llamafleet.io/isa"] == tier["labels"]["llamafleet.io/isa"]
        ready = [c for c in node["status"]["conditions"] if c["type"] == "Ready"]
        assert ready and ready[0]["status"] == "True", name
        assert node["status"]["allocatable"]["cpu"] == tier["cpu"]
        taints = {(t["key"], t.get("value"), t["effect"]) for t in node["spec"].get("taints", [])}
        if tier["gpus"]:
            assert node["status"]["allocatable"]["nvidia.com/gpu"] == str(tier["gpus"])
            assert ("nvidia.com/gpu", "present", "NoSchedule") in taints
        else:
            assert not any(key == "nvidia.com/gpu" for key, _, _ in taints)


def _deployment(
    name: str, namespace: str, node_selector: dict[str, str], replicas: int
) -> dict[str, Any]:
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {
                    "nodeSelector": node_selector,
                    "containers": [
                        {
                            "name": "c",
                            "image": "example.invalid/never-pulled:1",
                            "resources": {
                                "requests": {"cpu": "1", "memory": "1Gi"},
                                "limits": {"cpu": "1", "memory": "1Gi"},
                            },
                        }
                    ],
                },
            },
        },
    }


def test_deployment_pods_run_only_on_the_selected_tier(local_cluster: Cluster) -> None:
    ns = "e2e-placement"
    local_cluster.kubectl("create", "namespace", ns)
    dep = _deployment("small", ns, {"llamafleet.io/tier": "cpu-small"}, replicas=3)
    assert local_cluster.apply(dep).returncode == 0

    def running() -> list[dict[str, Any]]:
        pods = _pods(local_cluster, ns, "app=small")
        ok = [p for p in pods if p["status"].get("phase") == "Running"]
        return ok if len(ok) == 3 else []

    pods = _wait(running, timeout=90)
    assert pods, f"pods not Running: {_pods(local_cluster, ns, 'app=small')}"
    assert {p["spec"]["nodeName"] for p in pods} <= {"cpu-small-0", "cpu-small-1"}


def test_gpu_tier_needs_a_toleration_and_too_big_a_pod_stays_pending(
    local_cluster: Cluster,
) -> None:
    ns = "e2e-gpu"
    local_cluster.kubectl("create", "namespace", ns)
    untolerated = _deployment("gpu-no-toleration", ns, {"llamafleet.io/tier": "gpu-l4"}, replicas=1)
    assert local_cluster.apply(untolerated).returncode == 0
    tolerated = _deployment("gpu-ok", ns, {"llamafleet.io/tier": "gpu-l4"}, replicas=1)
    spec = tolerated["spec"]["template"]["spec"]
    spec["tolerations"] = [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}]
    spec["containers"][0]["resources"]["limits"]["nvidia.com/gpu"] = "1"
    assert local_cluster.apply(tolerated).returncode == 0
    huge = _deployment("too-big", ns, {"llamafleet.io/tier": "cpu-small"}, replicas=1)
    huge["spec"]["template"]["spec"]["containers"][0]["resources"] = {
        "requests": {"cpu": "2", "memory": "64Gi"},
        "limits": {"cpu": "2", "memory": "64Gi"},
    }
    assert local_cluster.apply(huge).returncode == 0

    def gpu_ok_running() -> list[dict[str, Any]]:
        pods = _pods(local_cluster, ns, "app=gpu-ok")
        return [p for p in pods if p["status"].get("phase") == "Running"]

    ok = _wait(gpu_ok_running, timeout=90)
    assert ok and ok[0]["spec"]["nodeName"] == "gpu-l4-0"

    def unschedulable(app: str) -> bool:
        pods = _pods(local_cluster, ns, f"app={app}")
        return bool(pods) and all(
            any(
                c["type"] == "PodScheduled" and c["status"] == "False"
                for c in p["status"].get("conditions", [])
            )
            for p in pods
        )

    assert _wait(lambda: unschedulable("gpu-no-toleration"), timeout=60)
    assert _wait(lambda: unschedulable("too-big"), timeout=60)


def test_resource_quota_rejects_a_pod_over_the_quota(local_cluster: Cluster) -> None:
    ns = "e2e-quota"
    local_cluster.kubectl("create", "namespace", ns)
    quota = {
        "apiVersion": "v1",
        "kind": "ResourceQuota",
        "metadata": {"name": "team", "namespace": ns},
        "spec": {"hard": {"limits.cpu": "2", "limits.memory": "2Gi", "pods": "4"}},
    }
    assert local_cluster.apply(quota).returncode == 0

    def pod(name: str, cpu: str) -> dict[str, Any]:
        return {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": name, "namespace": ns},
            "spec": {
                "nodeSelector": {"llamafleet.io/tier": "cpu-small"},
                "containers": [
                    {
                        "name": "c",
                        "image": "example.invalid/never-pulled:1",
                        "resources": {
                            "requests": {"cpu": cpu, "memory": "1Gi"},
                            "limits": {"cpu": cpu, "memory": "1Gi"},
                        },
                    }
                ],
            },
        }

    # The quota controller must have computed the quota's usage before admission enforces it.
    assert _wait(
        lambda: local_cluster.get("resourcequota", "team", "-n", ns).get("status", {}).get("used")
    )
    fits = local_cluster.apply(pod("fits", "1"))
    assert fits.returncode == 0, fits.stderr
    over = local_cluster.apply(pod("over", "2"))
    assert over.returncode != 0
    assert "exceeded quota" in over.stderr
