"""kube-state-metrics' metric names, listed by running the pinned binary (the release
kube-prometheus-stack's chart deploys) against the local control plane, with the labels
allowlist ClusterAddons gives it: every name llamafleet.monitoring.metrics gives it is among the
samples it exports once the cluster holds what the dashboards and alerts look at (a llama-server
Deployment's labels on a tier's node, a pod that no node fits, the tiers' nodes), and the labels
the dashboards join on are there, named as they expect."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from e2e_support import BIN, Cluster
from support.exporters import exporting, pinned, reported_version, scrape
from support.loopback import free_port
from support.promql import exposition_names, samples

from llamafleet.components.cluster_addons import KSM_LABELS_ALLOWLIST
from llamafleet.components.inference_pod import pod_labels, selector_labels
from llamafleet.components.labels import TIER_LABEL
from llamafleet.monitoring import metrics
from llamafleet.monitoring.queries import MODEL_KSM, TIER_KSM

pytestmark = pytest.mark.e2e

NS = "e2e-ksm"
TIER = "cpu-small"


@pytest.fixture(scope="module")
def kube_state_metrics() -> Path:
    path = BIN / "kube-state-metrics"
    if not path.is_file():
        pytest.skip(f"not built: {path}: run scripts/bootstrap-engine kube-state-metrics")
    return path


def _deployment(instance: str, tier: str) -> dict[str, Any]:
    """A Deployment labelled as InferenceService labels its own, one small pod on `tier`."""
    labels = pod_labels(instance, "small", tier)
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": instance, "namespace": NS, "labels": labels},
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": selector_labels(instance)},
            "template": {
                "metadata": {"labels": labels},
                "spec": {
                    "nodeSelector": {TIER_LABEL: tier},
                    "containers": [
                        {
                            "name": "llama-server",
                            "image": "example.invalid/never-pulled:1",
                            "resources": {
                                "requests": {"cpu": "100m", "memory": "64Mi"},
                                "limits": {"cpu": "100m", "memory": "64Mi"},
                            },
                        }
                    ],
                },
            },
        },
    }


def _phases(cluster: Cluster) -> dict[str, str]:
    pods = cluster.get("pods", "-n", NS)["items"]
    return {p["metadata"]["labels"][TIER_LABEL]: p["status"].get("phase", "") for p in pods}


@pytest.fixture(scope="module")
def workload(local_cluster: Cluster) -> Iterator[None]:
    """A served model's Deployment Running on TIER, and one whose tier has no node (Pending)."""
    local_cluster.kubectl("create", "namespace", NS)
    try:
        for instance, tier in (("small-cpu-small", TIER), ("small-nowhere", "no-such-tier")):
            applied = local_cluster.apply(_deployment(instance, tier))
            assert applied.returncode == 0, applied.stderr
        deadline = time.monotonic() + 90
        while _phases(local_cluster) != {TIER: "Running", "no-such-tier": "Pending"}:
            assert time.monotonic() < deadline, _phases(local_cluster)
            time.sleep(0.5)
        yield
    finally:
        local_cluster.kubectl("delete", "namespace", NS, "--ignore-not-found", "--wait=true")


def _export(kube_state_metrics: Path, cluster: Cluster, log: Path) -> str:
    """What kube-state-metrics exports once it lists the workload's pods and Deployments and
    exports every name the fleet queries (each kind's informer fills on its own, after it starts
    serving; on a busy machine, seconds apart)."""
    port, telemetry = free_port(), free_port()
    url = f"http://127.0.0.1:{port}/metrics"
    argv = [
        str(kube_state_metrics),
        f"--kubeconfig={cluster.kubeconfig}",
        "--host=127.0.0.1",
        f"--port={port}",
        "--telemetry-host=127.0.0.1",
        f"--telemetry-port={telemetry}",
        f"--metric-labels-allowlist={','.join(KSM_LABELS_ALLOWLIST)}",
    ]
    with exporting(argv, url, log):
        deadline = time.monotonic() + 60
        while True:
            text = scrape(url)
            listed = all(
                len(_ours(text, name)) == 2
                for name in (metrics.POD_INFO, metrics.POD_LABELS, metrics.DEPLOYMENT_LABELS)
            )
            every_name = metrics.EXPORTERS["kube-state-metrics"] <= exposition_names(text)
            if (listed and every_name) or time.monotonic() > deadline:
                return text
            time.sleep(1)


@pytest.fixture(scope="module")
def exported(
    kube_state_metrics: Path,
    local_cluster: Cluster,
    workload: None,
    tmp_path_factory: pytest.TempPathFactory,
) -> str:
    return _export(kube_state_metrics, local_cluster, tmp_path_factory.mktemp("ksm") / "ksm.log")


def _ours(text: str, name: str) -> dict[str, dict[str, str]]:
    """The samples of `name` for the workload's objects, by Deployment (the pod's or its own),
    with the sample's value under "value"."""
    found: dict[str, dict[str, str]] = {}
    for labels, value in samples(text, name):
        if labels.get("namespace") != NS:
            continue
        owner = labels.get("deployment") or labels["pod"].rsplit("-", 2)[0]
        key = owner if "phase" not in labels else f"{owner} {labels['phase']}"
        key = key if "resource" not in labels else f"{owner} {labels['resource']}"
        found[key] = {**labels, "value": f"{value:g}"}
    return found


def test_kube_state_metrics_is_the_pinned_release(kube_state_metrics: Path) -> None:
    version = pinned("KUBE_STATE_METRICS_VERSION")
    assert reported_version([str(kube_state_metrics), "version"]).startswith(
        f"kube-state-metrics, version v{version} "
    )


def test_kube_state_metrics_exports_every_name_the_fleet_queries(exported: str) -> None:
    assert metrics.EXPORTERS["kube-state-metrics"] - exposition_names(exported) == set()


def test_pods_and_deployments_carry_their_model_and_tier(exported: str) -> None:
    for name in (metrics.POD_LABELS, metrics.DEPLOYMENT_LABELS):
        found = _ours(exported, name)
        assert set(found) == {"small-cpu-small", "small-nowhere"}, (name, found)
        assert found["small-cpu-small"][TIER_KSM] == TIER
        assert found["small-cpu-small"][MODEL_KSM] == "small"
        assert found["small-nowhere"][TIER_KSM] == "no-such-tier"


def test_the_pending_pod_its_requests_and_its_node_are_there_to_join(exported: str) -> None:
    phases = _ours(exported, metrics.POD_PHASE)
    assert phases["small-nowhere Pending"]["value"] == "1", phases
    assert phases["small-cpu-small Running"]["value"] == "1", phases
    requests = _ours(exported, metrics.POD_REQUESTS)
    assert requests["small-cpu-small cpu"]["value"] == "0.1", requests
    assert {"small-cpu-small memory", "small-nowhere cpu"} <= set(requests)
    nodes = {
        owner: labels.get("node", "") for owner, labels in _ours(exported, metrics.POD_INFO).items()
    }
    assert nodes["small-cpu-small"].startswith(f"{TIER}-") and nodes["small-nowhere"] == "", nodes


def test_nodes_carry_their_tier_and_gpus_their_sanitized_resource(
    exported: str, test_tiers: list[dict[str, Any]]
) -> None:
    tiers = {
        labels["node"]: labels.get(TIER_KSM) for labels, _ in samples(exported, metrics.NODE_LABELS)
    }
    expected = {f"{t['name']}-{i}": t for t in test_tiers for i in range(t["count"])}
    assert {node: t["name"] for node, t in expected.items()}.items() <= tiers.items()
    gpu = metrics.sanitized("nvidia.com/gpu")
    with_gpus = {
        labels["node"]
        for labels, value in samples(exported, metrics.NODE_ALLOCATABLE)
        if labels["resource"] == gpu and value > 0
    }
    assert with_gpus == {node for node, t in expected.items() if t["gpus"]}
