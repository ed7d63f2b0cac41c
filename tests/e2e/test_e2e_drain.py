"""Node drains against the PodDisruptionBudgets the engine deployed, on the real control plane:
kube-apiserver's Eviction API refuses (429) what the budget forbids, from the status that
kube-controller-manager's disruption controller computes; kwok's nodes run the pods and mark
them Ready. One `up` of a stack with two models on the two-node tier cpu-small: `small` at one
replica (its budget: minAvailable 1) and `big` at two (maxUnavailable 1).

What an operator does to drain a node that holds a model's only replica: `kubectl drain` is
refused and cordons the node; `kubectl rollout restart` starts the replacement on another node
(maxSurge 1, maxUnavailable 0) and stops the old pod once the new one is Ready; the drain then
completes. The pods' own drain (preStop, grace period) is tests/image/test_rollout.py's.
"""

from __future__ import annotations

import copy
import json
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from e2e_support import TEAM_A, TEAM_B, Cluster, Project, ProjectFactory, e2e_config

pytestmark = pytest.mark.e2e

NS = f"llamafleet-{TEAM_B}"
TIER = "cpu-small"
LONE = f"small-{TIER}"  # replicas.min 1
PAIR = f"big-{TIER}"  # replicas.min 2


def drain_config(models_dir: Path, store_endpoint: str) -> dict[str, Any]:
    """The e2e stack cut to one team with `small` (1 replica) and `big` (2), both on cpu-small
    (two nodes), and quota for a surge pod on top."""
    config = copy.deepcopy(e2e_config(models_dir, store_endpoint))
    tenants = config["llamafleet:tenants"]
    del tenants[TEAM_A]
    tenants[TEAM_B]["models"] = ["small", "big"]
    tenants[TEAM_B]["quota"] = {"cpus": 8, "memoryGib": 16, "pods": 8}
    models = config["llamafleet:models"]
    del models["gpu"]
    models["big"]["tiers"] = [TIER]
    models["big"]["replicas"] = {"min": 2, "max": 2}
    return config


@pytest.fixture(scope="module")
def deployed(
    make_project: ProjectFactory, e2e_models: Path, store_endpoint: str, local_cluster: Cluster
) -> Iterator[Project]:
    project = make_project("e2e-drain", drain_config(e2e_models, store_endpoint))
    project.llamafleet("up")
    try:
        yield project
    finally:
        for node in tier_nodes(local_cluster):
            local_cluster.kubectl("uncordon", node, check=False)
        project.llamafleet("destroy", check=False)


def wait_for(what: str, probe: Callable[[], Any], timeout: float = 120) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = probe()
        if value:
            return value
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.5)


def tier_nodes(cluster: Cluster) -> list[str]:
    nodes = cluster.get("nodes", "-l", f"llamafleet.io/tier={TIER}")["items"]
    return sorted(n["metadata"]["name"] for n in nodes)


def ready_pods(cluster: Cluster, instance: str) -> list[dict[str, Any]]:
    pods = cluster.get("pods", "-n", NS, "-l", f"app.kubernetes.io/instance={instance}")["items"]
    return [
        p
        for p in pods
        if "deletionTimestamp" not in p["metadata"]
        and any(
            c["type"] == "Ready" and c["status"] == "True"
            for c in p["status"].get("conditions", [])
        )
    ]


def budget_allows(cluster: Cluster, instance: str) -> int | None:
    """The budget's disruptionsAllowed once the disruption controller has seen its current
    spec; None before."""
    pdb = cluster.get("pdb", instance, "-n", NS)
    status = pdb.get("status", {})
    if status.get("observedGeneration") != pdb["metadata"]["generation"]:
        return None
    return status.get("disruptionsAllowed")


def settled(cluster: Cluster, instance: str, pods: int, allowed: int) -> list[dict[str, Any]]:
    """Waits until `instance` has `pods` Ready pods and its budget allows `allowed` evictions."""

    def probe() -> list[dict[str, Any]] | None:
        ready = ready_pods(cluster, instance)
        if len(ready) == pods and budget_allows(cluster, instance) == allowed:
            return ready
        return None

    return wait_for(f"{instance}: {pods} ready, {allowed} disruptions allowed", probe)


def evict(cluster: Cluster, pod: dict[str, Any]) -> tuple[bool, str]:
    """POSTs a policy/v1 Eviction for `pod`: (admitted, kubectl's stderr)."""
    name = pod["metadata"]["name"]
    eviction = {
        "apiVersion": "policy/v1",
        "kind": "Eviction",
        "metadata": {"name": name, "namespace": NS},
    }
    done = cluster.kubectl(
        "create",
        "--raw",
        f"/api/v1/namespaces/{NS}/pods/{name}/eviction",
        "-f",
        "-",
        stdin=json.dumps(eviction),
        check=False,
    )
    return done.returncode == 0, done.stderr


def drain(cluster: Cluster, node: str, timeout: str) -> Any:
    """`kubectl drain` of `node`, for the LONE model's pods only (the gateway's run elsewhere
    with a budget of their own)."""
    return cluster.kubectl(
        "drain",
        node,
        f"--pod-selector=app.kubernetes.io/instance={LONE}",
        "--ignore-daemonsets",
        "--delete-emptydir-data",
        f"--timeout={timeout}",
        check=False,
    )


def test_a_lone_replica_waits_for_a_rollout_to_replace_it_elsewhere(
    deployed: Project, local_cluster: Cluster
) -> None:
    assert len(tier_nodes(local_cluster)) == 2
    (pod,) = settled(local_cluster, LONE, pods=1, allowed=0)
    node = pod["spec"]["nodeName"]

    admitted, refused = evict(local_cluster, pod)
    assert not admitted
    assert "TooManyRequests" in refused and "disruption budget" in refused, refused
    drained = drain(local_cluster, node, "10s")  # the operator's view: refused, node cordoned
    assert drained.returncode != 0
    assert "disruption budget" in drained.stderr, drained.stderr
    assert local_cluster.get("node", node)["spec"].get("unschedulable") is True
    (still,) = ready_pods(local_cluster, LONE)
    assert still["metadata"]["uid"] == pod["metadata"]["uid"]

    local_cluster.kubectl("rollout", "restart", f"deployment/{LONE}", "-n", NS)
    local_cluster.kubectl("rollout", "status", f"deployment/{LONE}", "-n", NS, "--timeout=120s")
    (replaced,) = settled(local_cluster, LONE, pods=1, allowed=0)
    assert replaced["metadata"]["uid"] != pod["metadata"]["uid"]
    assert replaced["spec"]["nodeName"] in set(tier_nodes(local_cluster)) - {node}
    # The rollout stopped the old pod once the new one was Ready: the drain has nothing left.
    again = drain(local_cluster, node, "30s")
    assert again.returncode == 0, again.stderr
    local_cluster.kubectl("uncordon", node)


def test_two_replicas_are_evicted_one_at_a_time(deployed: Project, local_cluster: Cluster) -> None:
    first, second = settled(local_cluster, PAIR, pods=2, allowed=1)
    nodes = tier_nodes(local_cluster)
    for node in nodes:  # the replacement stays Pending until a node takes pods again
        local_cluster.kubectl("cordon", node)

    admitted, why = evict(local_cluster, first)
    assert admitted, why
    admitted, refused = evict(local_cluster, second)
    assert not admitted
    assert "TooManyRequests" in refused and "disruption budget" in refused, refused

    local_cluster.kubectl("uncordon", nodes[0])
    ready = settled(local_cluster, PAIR, pods=2, allowed=1)
    assert second["metadata"]["uid"] in {p["metadata"]["uid"] for p in ready}
    admitted, why = evict(local_cluster, second)
    assert admitted, why
    local_cluster.kubectl("uncordon", nodes[1])
    settled(local_cluster, PAIR, pods=2, allowed=1)
