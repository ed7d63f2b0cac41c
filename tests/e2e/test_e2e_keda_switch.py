"""Switching a cluster's autoscaler from `hpa` to `keda` in one `up`, through the real engine,
with KEDA's own operator and admission webhook (built from github.com/kedacore/keda/v2 at the
version the pinned chart deploys) running natively against the local control plane, the webhook
enforcing (failurePolicy Fail) (../shared/cases/c17).

KEDA's webhook denies a ScaledObject for a workload an HPA already scales, unless the
ScaledObject adopts that HPA (`scaledobject.keda.sh/transfer-hpa-ownership` and
`horizontalPodAutoscalerConfig.name`); Pulumi creates before it deletes, so the switch works only
by adoption, and then Pulumi must not delete the HPA KEDA took over.
"""

from __future__ import annotations

import base64
import json
import os
import subprocess
import time
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from e2e_support import BIN, TEAM_B, Cluster, ProjectFactory, small_config
from support.loopback import free_port

from llamafleet.components.cluster_addons import ChartVersions

pytestmark = pytest.mark.e2e

KEDA_BINARIES = ("keda-operator", "keda-admission-webhooks", "keda-crds.yaml")
WEBHOOK_CONFIG = "llamafleet-e2e-keda-admission"
NAMESPACE = f"llamafleet-{TEAM_B}"


@dataclass(frozen=True)
class Keda:
    """KEDA running natively: its logs, for failure messages."""

    logs: dict[str, Path]

    def log_tails(self) -> str:
        return "\n".join(f"{name}:\n{path.read_text()[-3000:]}" for name, path in self.logs.items())


def _certificate(folder: Path) -> bytes:
    """A self-signed serving certificate for 127.0.0.1 (its own CA), as the webhook reads it."""
    folder.mkdir()
    subprocess.run(
        [
            "openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
            "-keyout", str(folder / "tls.key"), "-out", str(folder / "tls.crt"),
            "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1",
        ],
        check=True,
        capture_output=True,
        timeout=60,
    )  # fmt: skip
    cert = (folder / "tls.crt").read_bytes()
    (folder / "ca.crt").write_bytes(cert)
    return cert


def _wait_ready(port: int, process: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        assert process.poll() is None, log.read_text()[-3000:]
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=2) as answer:
                if answer.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.5)
    raise AssertionError(f"not ready in 60 s:\n{log.read_text()[-3000:]}")


def _webhook_config(port: int, ca: bytes) -> dict[str, Any]:
    """KEDA's ScaledObject webhook (config/webhooks of the release), reached by URL, enforcing."""
    return {
        "apiVersion": "admissionregistration.k8s.io/v1",
        "kind": "ValidatingWebhookConfiguration",
        "metadata": {"name": WEBHOOK_CONFIG},
        "webhooks": [
            {
                "name": "vscaledobject.kb.io",
                "admissionReviewVersions": ["v1"],
                "clientConfig": {
                    "url": f"https://127.0.0.1:{port}/validate-keda-sh-v1alpha1-scaledobject",
                    "caBundle": base64.b64encode(ca).decode(),
                },
                "failurePolicy": "Fail",
                "sideEffects": "None",
                "timeoutSeconds": 10,
                "rules": [
                    {
                        "apiGroups": ["keda.sh"],
                        "apiVersions": ["v1alpha1"],
                        "operations": ["CREATE", "UPDATE"],
                        "resources": ["scaledobjects"],
                    }
                ],
            }
        ],
    }


@pytest.fixture(scope="module")
def keda(local_cluster: Cluster, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Keda]:
    """KEDA's CRDs, operator and enforcing admission webhook on the local control plane."""
    missing = [name for name in KEDA_BINARIES if not (BIN / name).is_file()]
    if missing:
        pytest.skip(f"not built: {', '.join(missing)} in {BIN}: run scripts/bootstrap-engine keda")
    work = tmp_path_factory.mktemp("keda")
    ca = _certificate(work / "certs")
    local_cluster.kubectl("apply", "--server-side", "-f", str(BIN / "keda-crds.yaml"))
    local_cluster.kubectl("create", "namespace", "keda", check=False)
    env = {
        **os.environ,
        "KUBECONFIG": str(local_cluster.kubeconfig),
        "KEDA_CLUSTER_OBJECT_NAMESPACE": "keda",
        "WATCH_NAMESPACE": "",
    }
    webhook_port = free_port()
    ports = {name: (free_port(), free_port()) for name in ("operator", "webhooks")}
    argvs = {
        "operator": [
            str(BIN / "keda-operator"),
            f"--metrics-service-bind-address=127.0.0.1:{free_port()}",
            "--enable-cert-rotation=false",
        ],
        "webhooks": [str(BIN / "keda-admission-webhooks"), f"--port={webhook_port}"],
    }
    processes: list[subprocess.Popen[bytes]] = []
    logs: dict[str, Path] = {}
    try:
        for name, argv in argvs.items():
            probe, metrics = ports[name]
            logs[name] = work / f"{name}.log"
            with logs[name].open("wb") as sink:
                process = subprocess.Popen(
                    [
                        *argv,
                        f"--cert-dir={work / 'certs'}",
                        f"--health-probe-bind-address=127.0.0.1:{probe}",
                        f"--metrics-bind-address=127.0.0.1:{metrics}",
                    ],
                    env=env,
                    stdout=sink,
                    stderr=subprocess.STDOUT,
                )
            processes.append(process)
            _wait_ready(probe, process, logs[name])
        applied = local_cluster.apply(_webhook_config(webhook_port, ca))
        assert applied.returncode == 0, applied.stderr
        yield Keda(logs)
    finally:
        local_cluster.kubectl(
            "delete", "validatingwebhookconfiguration", WEBHOOK_CONFIG, check=False
        )
        for process in processes:
            process.terminate()
            process.wait(timeout=30)


def _hpa(cluster: Cluster, name: str) -> dict[str, Any] | None:
    found = cluster.kubectl("get", "hpa", name, "-n", NAMESPACE, "-o", "json", check=False)
    return json.loads(found.stdout) if found.returncode == 0 else None


def _eventually(check: Callable[[], bool], what: str, seconds: float = 60) -> None:
    deadline = time.monotonic() + seconds
    while not check():
        assert time.monotonic() < deadline, what
        time.sleep(0.5)


def _plain_scaled_object(deployment: str) -> dict[str, Any]:
    """A ScaledObject for `deployment` that does not adopt its HPA."""
    return {
        "apiVersion": "keda.sh/v1alpha1",
        "kind": "ScaledObject",
        "metadata": {"name": f"{deployment}-plain", "namespace": NAMESPACE},
        "spec": {
            "scaleTargetRef": {"name": deployment},
            "triggers": [
                {
                    "type": "prometheus",
                    "metadata": {
                        "serverAddress": "http://127.0.0.1:9",
                        "query": "sum(up)",
                        "threshold": "1",
                    },
                }
            ],
        },
    }


def _state_types(project: Any) -> list[str]:
    """The types of the model's resources in the state (not the gateway's: it keeps its own
    CPU HPA whichever autoscaler the models have)."""
    exported = json.loads(project.pulumi("stack", "export").stdout)
    return [
        resource["type"]
        for resource in exported["deployment"].get("resources") or []
        if "llamafleet:serving:Gateway" not in resource["urn"]
    ]


def test_switching_hpa_to_keda_adopts_the_hpa_and_back_in_one_up_each(
    keda: Keda, local_cluster: Cluster, make_project: ProjectFactory, e2e_models: Path,
    store_endpoint: str,
) -> None:  # fmt: skip
    config = small_config(e2e_models, store_endpoint)
    project = make_project("e2e-keda", config)
    try:
        project.llamafleet("up")
        (hpa,) = local_cluster.get("hpa", "-n", NAMESPACE)["items"]
        name, uid = hpa["metadata"]["name"], hpa["metadata"]["uid"]
        assert [o["kind"] for o in hpa["metadata"]["ownerReferences"]] == ["Deployment"]
        # The control: the webhook enforces, and denies a ScaledObject that does not adopt.
        denied = local_cluster.apply(_plain_scaled_object(name), "--dry-run=server")
        assert denied.returncode != 0
        assert f"is already managed by the hpa '{name}'" in denied.stderr, denied.stderr

        config["llamafleet:clusters"]["local"]["autoscaler"] = "keda"
        project.write_config(config)
        up = project.llamafleet("up")

        _eventually(
            lambda: [o["kind"] for o in (_hpa(local_cluster, name) or {}).get("metadata", {})
                     .get("ownerReferences", [])] == ["ScaledObject"],
            f"KEDA did not adopt HPA {name}:\n{keda.log_tails()}",
        )  # fmt: skip
        adopted = _hpa(local_cluster, name)
        assert adopted is not None
        assert adopted["metadata"]["uid"] == uid, "the HPA was deleted and made again"
        assert adopted["spec"]["metrics"][0]["type"] == "External"  # KEDA's queue metric
        types = _state_types(project)
        assert "kubernetes:keda.sh/v1alpha1:ScaledObject" in types
        assert "kubernetes:autoscaling/v2:HorizontalPodAutoscaler" not in types, up.stdout
        time.sleep(5)  # nothing deletes it later either
        assert (_hpa(local_cluster, name) or {}).get("metadata", {}).get("uid") == uid
        again = project.llamafleet("preview", after=["--expect-no-changes"], check=False)
        assert again.returncode == 0, again.stdout[-4000:] + again.stderr[-4000:]

        # And back, also in one `up`: the HPA replaces the ScaledObject, which goes first.
        config["llamafleet:clusters"]["local"]["autoscaler"] = "hpa"
        project.write_config(config)
        project.llamafleet("up")

        back = _hpa(local_cluster, name)
        assert back is not None and back["metadata"]["uid"] != uid
        assert [o["kind"] for o in back["metadata"]["ownerReferences"]] == ["Deployment"]
        assert back["spec"]["metrics"][0]["type"] == "Resource"  # CPU again
        assert not local_cluster.get("scaledobjects", "-n", NAMESPACE)["items"]
        types = _state_types(project)
        assert "kubernetes:keda.sh/v1alpha1:ScaledObject" not in types
        assert "kubernetes:autoscaling/v2:HorizontalPodAutoscaler" in types
        time.sleep(5)  # KEDA, deleting its own HPA of that name, was done before this one
        assert (_hpa(local_cluster, name) or {}).get("metadata", {}).get("uid") == back["metadata"][
            "uid"
        ]
        final = project.llamafleet("preview", after=["--expect-no-changes"], check=False)
        assert final.returncode == 0, final.stdout[-4000:] + final.stderr[-4000:]
    finally:
        project.llamafleet("destroy")
    _eventually(
        lambda: not local_cluster.get("hpa", "-n", NAMESPACE)["items"],
        "KEDA left its HPA after the ScaledObject was destroyed",
    )


def test_an_hpa_goes_with_its_deployment(
    local_cluster: Cluster, make_project: ProjectFactory, e2e_models: Path, store_endpoint: str
) -> None:
    """Pulumi never deletes an HPA (retain_on_delete): a tier taken off a model still loses its
    HPA, which Kubernetes deletes with the Deployment that owns it."""
    config = small_config(e2e_models, store_endpoint)
    config["llamafleet:models"]["small"]["tiers"] = ["cpu-small", "cpu-big"]
    project = make_project("e2e-hpa-owner", config)
    try:
        project.llamafleet("up")
        names = {h["metadata"]["name"] for h in local_cluster.get("hpa", "-n", NAMESPACE)["items"]}
        assert names == {"small-cpu-small", "small-cpu-big"}
        config["llamafleet:models"]["small"]["tiers"] = ["cpu-small"]
        project.write_config(config)
        project.llamafleet("up")
        _eventually(
            lambda: _hpa(local_cluster, "small-cpu-big") is None,
            "the HPA of the removed Deployment is still there",
        )
        assert _hpa(local_cluster, "small-cpu-small") is not None
    finally:
        project.llamafleet("destroy")


def test_the_keda_running_is_the_one_the_pinned_chart_deploys(keda: Keda) -> None:
    chart = ChartVersions().keda  # kedacore/keda charts are versioned as KEDA itself
    assert f'"msg":"KEDA Version: {chart}"' in keda.logs["operator"].read_text()
