"""`llamafleet status`: gathering from canned API server and Prometheus answers (as each returns
them), the screen, the `--json` document, and one line per source that does not answer.

The command itself runs against a fake kubectl (a script in the bootstrap's bin directory that
answers from a file or fails as kubectl does) and a Prometheus stand-in on loopback."""

from __future__ import annotations

import copy
import io
import json
import socket
import stat
import sys
import threading
import urllib.parse
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from rich.console import Console
from support.loopback import free_port
from support.stack_renders import model_objects, rendered_stack

from llamafleet.command import status_command
from llamafleet.command.cli import main
from llamafleet.command.serve import DEPLOYMENT_SELECTOR, Kubectl, kubectl_error
from llamafleet.command.status import (
    BUSY_QUERY,
    GROUPS_QUERY,
    QUEUE_QUERY,
    SOURCE_API_SERVER,
    SOURCE_PROMETHEUS,
    SPILLS_QUERY,
    TOKENS_QUERY,
    SourceError,
    firing_alerts,
    gather,
    model_deployments,
    to_json,
)
from llamafleet.command.status_command import (
    ClusterService,
    HttpPrometheus,
    ProxiedPrometheus,
    cluster_service,
    kubeconfig_for,
    list_deployments,
)
from llamafleet.command.status_screen import screen
from llamafleet.components.inference_pod import pod_labels
from llamafleet.components.labels import MODEL_LABEL, TIER_LABEL
from llamafleet.monitoring import metrics
from llamafleet.settings.load import load_stack_file, stack_file
from llamafleet.settings.schema import Cluster

DIGEST = "sha256:a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818"
NAMESPACE, SERVICE = "llamafleet-demo", "gemma3-270m-cpu-small"
TEAM, MODEL, TIER = "demo", "gemma3-270m", "cpu-small"
REFUSED = (
    "E1201 14:55:37.627461   17950 memcache.go:381] \"Couldn't get current server API group "
    'list" err="Get \\"https://127.0.0.1:1/api?timeout=32s\\": dial tcp 127.0.0.1:1: connect: '
    'connection refused"\n'
    * 3
    + "The connection to the server 127.0.0.1:1 was refused - did you specify the right host "
    "or port?\n"
)
JSON_KEYS = {"stack", "cluster", "errors", "models", "alerts"}
MODEL_KEYS = {
    "team",
    "model",
    "tier",
    "namespace",
    "deployment",
    "desiredReplicas",
    "readyReplicas",
    "digest",
    "queue",
    "busySlots",
    "tokensPerSecond",
    "spillsPerSecond",
}


def deployment_list() -> dict[str, Any]:
    """The local stack's Deployment as the API server returns it once its pod is ready, and a
    Deployment outside the teams' namespaces that matches the selector too."""
    (rendered,) = [
        o
        for o in model_objects(rendered_stack("local").kubernetes_objects)
        if o["kind"] == "Deployment"
    ]
    ready = copy.deepcopy(rendered)
    ready["status"] = {"replicas": 1, "readyReplicas": 1, "availableReplicas": 1}
    stray = copy.deepcopy(rendered)
    stray["metadata"]["namespace"] = "default"
    return {"apiVersion": "v1", "kind": "List", "items": [ready, stray]}


def vector(*samples: tuple[dict[str, str], str]) -> dict[str, Any]:
    return {
        "status": "success",
        "data": {
            "resultType": "vector",
            "result": [{"metric": m, "value": [1764600000.5, v]} for m, v in samples],
        },
    }


SERVER = {"namespace": NAMESPACE, "service": SERVICE}
GROUP = {"team": TEAM, "model": MODEL, "tier": TIER}
QUERIES = {
    QUEUE_QUERY: vector((SERVER, "3")),
    BUSY_QUERY: vector((SERVER, "2")),
    TOKENS_QUERY: vector((SERVER, "41.25")),
    SPILLS_QUERY: vector((GROUP, "0.5")),
    GROUPS_QUERY: vector((GROUP, "1")),
}
ALERTS = {
    "status": "success",
    "data": {
        "alerts": [
            {
                "labels": {
                    "alertname": "LlamafleetQueueGrowing",
                    "namespace": NAMESPACE,
                    "service": SERVICE,
                    "severity": "warning",
                },
                "annotations": {
                    "summary": "3 requests wait at llamafleet-demo/gemma3-270m-cpu-small"
                },
                "state": "firing",
                "activeAt": "2026-12-01T14:00:00.123Z",
                "value": "3e+00",
            },
            {
                "labels": {"alertname": "LlamafleetModelErrors", "severity": "critical", **GROUP},
                "annotations": {"summary": "errors"},
                "state": "pending",
                "activeAt": "2026-12-01T14:01:00Z",
                "value": "1e+00",
            },
            {
                "labels": {"alertname": "Watchdog", "severity": "none"},
                "annotations": {},
                "state": "firing",
                "activeAt": "2026-12-01T13:00:00Z",
                "value": "1e+00",
            },
        ]
    },
}


@dataclass
class CannedPrometheus:
    """A PrometheusApi answering from `queries` (default QUERIES) and ALERTS, or failing with
    `fail`."""

    fail: str | None = None
    queries: dict[str, dict[str, Any]] = field(default_factory=lambda: dict(QUERIES))

    def get(self, path: str, params: Mapping[str, str]) -> Any:
        if self.fail:
            raise SourceError(self.fail)
        answer = ALERTS if path == "/api/v1/alerts" else self.queries[params["query"]]
        return answer["data"]


def api_down() -> list[dict[str, Any]]:
    raise SourceError("The connection to the server 127.0.0.1:1 was refused")


def test_the_queries_name_the_metrics_of_metrics_py() -> None:
    assert QUEUE_QUERY == (
        'sum by (namespace, service) (llamacpp:requests_deferred{namespace=~"llamafleet-.+"})'
    )
    assert BUSY_QUERY == (
        'sum by (namespace, service) (llamacpp:requests_processing{namespace=~"llamafleet-.+"})'
    )
    assert TOKENS_QUERY == (
        "sum by (namespace, service) "
        '(rate(llamacpp:tokens_predicted_total{namespace=~"llamafleet-.+"}[5m]))'
    )
    assert SPILLS_QUERY == "sum by (team, model, tier) (rate(llamafleet_gateway_spills_total[5m]))"
    assert metrics.DEMAND in GROUPS_QUERY


def test_the_model_label_is_the_one_pods_carry() -> None:
    labels = pod_labels("instance", "the-model", "the-tier")
    assert labels[MODEL_LABEL] == "the-model"
    assert labels[TIER_LABEL] == "the-tier"


def test_a_deployed_model_is_read_from_its_deployment() -> None:
    (deployment,) = model_deployments(deployment_list()["items"])
    assert deployment.namespace == NAMESPACE and deployment.name == SERVICE
    assert (deployment.team, deployment.model, deployment.tier) == (TEAM, MODEL, TIER)
    assert (deployment.desired_replicas, deployment.ready_replicas) == (1, 1)
    # The digest the fetcher init container gets, which is the stack's.
    settings = load_stack_file(stack_file("local"))
    assert deployment.digest == settings.models[MODEL].digest == DIGEST


def test_a_new_deployment_has_no_ready_replicas_and_a_malformed_one_is_one_line() -> None:
    item = deployment_list()["items"][0]
    del item["status"]
    (deployment,) = model_deployments([item])
    assert (deployment.desired_replicas, deployment.ready_replicas) == (1, 0)
    with pytest.raises(SourceError, match="malformed"):
        model_deployments([{"metadata": {"name": "x"}}])


def test_both_sources_are_combined_per_team_model_and_tier() -> None:
    prometheus = CannedPrometheus()
    status = gather("local", "local", lambda: deployment_list()["items"], prometheus)
    assert status.problems == ()
    (row,) = status.models
    assert (row.team, row.model, row.tier, row.deployment) == (TEAM, MODEL, TIER, SERVICE)
    assert (row.ready_replicas, row.desired_replicas, row.digest) == (1, 1, DIGEST)
    assert (row.queue, row.busy_slots, row.tokens_per_second) == (3.0, 2.0, 41.25)
    assert row.spills_per_second == 0.5
    # Only firing llamafleet alerts: not a pending one, not another stack's Watchdog.
    assert status.alerts is not None
    assert [a.name for a in status.alerts] == ["LlamafleetQueueGrowing"]
    assert status.alerts[0].labels == SERVER and status.alerts[0].severity == "warning"


def test_the_json_document_has_stable_keys() -> None:
    status = gather("local", "local", lambda: deployment_list()["items"], CannedPrometheus())
    document = json.loads(json.dumps(to_json(status)))
    assert set(document) == JSON_KEYS
    assert document["errors"] == {"apiServer": None, "prometheus": None}
    (model,) = document["models"]
    assert set(model) == MODEL_KEYS
    assert model == {
        "team": TEAM,
        "model": MODEL,
        "tier": TIER,
        "namespace": NAMESPACE,
        "deployment": SERVICE,
        "desiredReplicas": 1,
        "readyReplicas": 1,
        "digest": DIGEST,
        "queue": 3.0,
        "busySlots": 2.0,
        "tokensPerSecond": 41.25,
        "spillsPerSecond": 0.5,
    }
    (alert,) = document["alerts"]
    assert alert == {
        "alertname": "LlamafleetQueueGrowing",
        "severity": "warning",
        "labels": SERVER,
        "summary": "3 requests wait at llamafleet-demo/gemma3-270m-cpu-small",
        "activeAt": "2026-12-01T14:00:00.123Z",
    }


def screen_text(status: Any, width: int = 160) -> str:
    console = Console(file=io.StringIO(), width=width, record=True, color_system=None)
    console.print(screen(status))
    return console.export_text()


def model_rows(text: str) -> list[str]:
    """The screen's lines of the demo team's models."""
    return [line for line in text.splitlines() if line.startswith(f"{TEAM} ")]


def test_the_screen_shows_each_column() -> None:
    text = screen_text(
        gather("local", "local", lambda: deployment_list()["items"], CannedPrometheus())
    )
    (row,) = model_rows(text)
    assert row.split() == [TEAM, MODEL, TIER, "1/1", "3", "2", "41.2", "0.50", "a5fd3b62230a"]
    assert "LlamafleetQueueGrowing" in text and "namespace=llamafleet-demo" in text


def test_without_prometheus_the_metrics_are_dashes() -> None:
    status = gather(
        "local", "local", lambda: deployment_list()["items"], CannedPrometheus(fail="down")
    )
    assert [p.source for p in status.problems] == [SOURCE_PROMETHEUS]
    (row,) = status.models
    assert (row.ready_replicas, row.digest) == (1, DIGEST)
    assert (row.queue, row.busy_slots, row.tokens_per_second, row.spills_per_second) == (
        None,
        None,
        None,
        None,
    )
    assert to_json(status)["alerts"] is None
    (row_line,) = model_rows(screen_text(status))
    assert row_line.split()[3:8] == [
        "1/1",
        "-",
        "-",
        "-",
        "-",
    ]
    assert "firing alerts: - (Prometheus did not answer)" in screen_text(status)


def test_without_the_api_server_the_rows_come_from_the_metrics() -> None:
    status = gather("local", "local", api_down, CannedPrometheus())
    assert [p.source for p in status.problems] == [SOURCE_API_SERVER]
    (row,) = status.models
    assert (row.team, row.model, row.tier, row.deployment) == (TEAM, MODEL, TIER, SERVICE)
    assert (row.desired_replicas, row.ready_replicas, row.digest) == (None, None, None)
    assert (row.queue, row.tokens_per_second) == (3.0, 41.25)


def test_a_series_no_group_explains_is_shown_by_its_service() -> None:
    prometheus = CannedPrometheus()
    other = {"namespace": "llamafleet-beta", "service": "small-cpu"}
    prometheus.queries[QUEUE_QUERY] = vector((SERVER, "3"), (other, "0"))
    status = gather("local", "local", api_down, prometheus)
    stray = next(r for r in status.models if r.deployment == "small-cpu")
    assert (stray.team, stray.model, stray.tier, stray.queue) == ("beta", None, None, 0.0)
    assert stray.spills_per_second is None


def test_nothing_deployed_is_said_so() -> None:
    status = gather("local", "local", lambda: [], CannedPrometheus())
    assert status.models == ()
    assert "no llama-server Deployments" in screen_text(status)


def test_alerts_are_most_severe_first() -> None:
    def firing(name: str, severity: str) -> dict[str, Any]:
        labels = {"alertname": name, "severity": severity}
        return {"labels": labels, "annotations": {}, "state": "firing", "activeAt": ""}

    data = {
        "alerts": [
            firing("LlamafleetModelSpilling", "info"),
            firing("LlamafleetModelErrors", "critical"),
            firing("LlamafleetQueueGrowing", "warning"),
        ]
    }
    assert [a.severity for a in firing_alerts(data)] == ["critical", "warning", "info"]
    with pytest.raises(SourceError):
        firing_alerts({"no": "alerts"})


# -- the sources, as the command reaches them ------------------------------------------------


def test_kubectls_own_error_line_is_kept_not_its_log_lines() -> None:
    assert kubectl_error(REFUSED) == (
        "The connection to the server 127.0.0.1:1 was refused - did you specify the right host "
        "or port?"
    )
    assert kubectl_error("E1201 14:55:37.6 1 x.go:1] only logs\n") == (
        "E1201 14:55:37.6 1 x.go:1] only logs"
    )
    assert kubectl_error("") == "failed"


def test_an_in_cluster_prometheus_url_is_a_service_to_proxy() -> None:
    assert cluster_service("http://prometheus-operated.monitoring.svc:9090") == ClusterService(
        "http", "prometheus-operated", "monitoring", 9090, ""
    )
    service = cluster_service("https://prom.obs.svc.cluster.local/prometheus/")
    assert service == ClusterService("https", "prom", "obs", 443, "/prometheus")
    assert service.proxy_path == ("/api/v1/namespaces/obs/services/https:prom:443/proxy/prometheus")
    assert cluster_service("https://prometheus.example.com") is None
    assert cluster_service("http://10.0.0.5:9090") is None


def cluster(**kubeconfig: str) -> Cluster:
    return Cluster.model_validate(
        {
            "kind": "existing",
            "kubeconfig": kubeconfig,
            "tiers": {
                "cpu": {
                    "kind": "cpu",
                    "isa": "avx2",
                    "cpusPerNode": 4,
                    "memoryPerNodeGib": 8,
                    "nodes": {"min": 1, "max": 1},
                }
            },
        }
    )


def test_the_kubeconfig_is_the_given_then_local_then_the_settings_then_kubeconfig_env(
    tmp_path: Path,
) -> None:
    given = tmp_path / "given"
    env = {"KUBECONFIG": f"/env/first{':'}/env/second", "LLAMAFLEET_CACHE": str(tmp_path)}
    named = cluster(path="~/dc1.kubeconfig", context="dc1-admin")
    assert kubeconfig_for("onprem", named, given, env) == (given, None)
    local = kubeconfig_for("local", named, None, env)
    assert local == (tmp_path / "local" / "kubeconfig", None)
    assert kubeconfig_for("onprem", named, None, env) == (
        Path("~/dc1.kubeconfig").expanduser(),
        "dc1-admin",
    )
    by_context = cluster(context="dc1-admin")
    assert kubeconfig_for("onprem", by_context, None, env) == (Path("/env/first"), "dc1-admin")
    assert kubeconfig_for("onprem", cluster(), None, {}) == (
        Path.home() / ".kube" / "config",
        None,
    )


FAKE_KUBECTL = """#!{python}
import json, os, sys
from pathlib import Path
here = Path(__file__).parent
with (here / "argv.jsonl").open("a") as log:
    log.write(json.dumps(sys.argv[1:]) + "\\n")
answer = here / "answer"
if answer.exists() and "--raw" not in sys.argv:
    sys.stdout.write(answer.read_text())
    sys.exit(0)
raw = here / "raw"
if raw.exists() and "--raw" in sys.argv:
    sys.stdout.write(raw.read_text())
    sys.exit(0)
sys.stderr.write((here / "refusal").read_text())
sys.exit(1)
"""


@pytest.fixture
def fake_kubectl(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A kubectl in the bootstrap's bin directory (LLAMAFLEET_CACHE): it answers `get` from
    bin/answer and `get --raw` from bin/raw where they exist, else fails as kubectl does when
    the server refuses connections; its calls are logged in bin/argv.jsonl."""
    cache = tmp_path / "cache"
    bin_dir = cache / "bin"
    bin_dir.mkdir(parents=True)
    script = bin_dir / "kubectl"
    script.write_text(FAKE_KUBECTL.format(python=sys.executable))
    script.chmod(script.stat().st_mode | stat.S_IXUSR)
    (bin_dir / "refusal").write_text(REFUSED)
    monkeypatch.setenv("LLAMAFLEET_CACHE", str(cache))
    return bin_dir


def calls(bin_dir: Path) -> list[list[str]]:
    return [json.loads(line) for line in (bin_dir / "argv.jsonl").read_text().splitlines()]


def test_deployments_are_listed_by_the_serve_selector_in_the_context(
    fake_kubectl: Path, tmp_path: Path
) -> None:
    (fake_kubectl / "answer").write_text(json.dumps(deployment_list()))
    kubectl = Kubectl(tmp_path / "kubeconfig", "dc1-admin")
    assert len(list_deployments(kubectl)) == 2
    (argv,) = calls(fake_kubectl)
    assert argv == [
        "--kubeconfig",
        str(tmp_path / "kubeconfig"),
        "--context",
        "dc1-admin",
        "get",
        "-o",
        "json",
        "deployments",
        "--all-namespaces",
        "-l",
        DEPLOYMENT_SELECTOR,
    ]


def test_prometheus_through_the_service_proxy(fake_kubectl: Path, tmp_path: Path) -> None:
    (fake_kubectl / "raw").write_text(json.dumps(QUERIES[QUEUE_QUERY]))
    service = cluster_service("http://prometheus-operated.monitoring.svc:9090")
    assert service is not None
    proxied = ProxiedPrometheus(Kubectl(tmp_path / "kubeconfig"), service)
    data = proxied.get("/api/v1/query", {"query": QUEUE_QUERY})
    assert data == QUERIES[QUEUE_QUERY]["data"]
    (argv,) = calls(fake_kubectl)
    assert argv[:4] == ["--kubeconfig", str(tmp_path / "kubeconfig"), "get", "--raw"]
    path, _, query = argv[4].partition("?")
    assert path == (
        "/api/v1/namespaces/monitoring/services/prometheus-operated:9090/proxy/api/v1/query"
    )
    assert urllib.parse.parse_qs(query) == {"query": [QUEUE_QUERY]}
    (fake_kubectl / "raw").unlink()
    with pytest.raises(SourceError) as refused:
        proxied.get("/api/v1/alerts", {})
    assert str(refused.value) == (
        "kubectl get --raw /api/v1/namespaces/monitoring/services/prometheus-operated:9090/proxy"
        "/api/v1/alerts: The connection to the server 127.0.0.1:1 was refused - did you specify "
        "the right host or port?"
    )


class PrometheusStandIn(BaseHTTPRequestHandler):
    """Prometheus' HTTP API with QUERIES and ALERTS, or `status` (an HTTP error) and `body`."""

    status = 200
    body = b""

    def do_GET(self) -> None:
        url = urllib.parse.urlsplit(self.path)
        if self.status != 200:
            self.send_response(self.status)
            self.end_headers()
            self.wfile.write(self.body)
            return
        if url.path == "/api/v1/alerts":
            answer: Any = ALERTS
        else:
            query = urllib.parse.parse_qs(url.query)["query"][0]
            answer = QUERIES.get(
                query,
                {"status": "error", "errorType": "bad_data", "error": f"unknown query {query}"},
            )
        body = json.dumps(answer).encode()
        self.send_response(200 if answer["status"] == "success" else 400)
        self.send_header("Content-Type", "application/json")
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass


@dataclass(frozen=True)
class StandIn:
    """A running Prometheus stand-in: its base URL and its handler class (set `status` and
    `body` on it to answer an HTTP error)."""

    url: str
    handler: type[PrometheusStandIn]


@pytest.fixture
def prometheus() -> Iterator[StandIn]:
    """A Prometheus stand-in on loopback, answering QUERIES and ALERTS."""

    class Handler(PrometheusStandIn):
        pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield StandIn(f"http://127.0.0.1:{server.server_address[1]}", Handler)
    server.shutdown()
    server.server_close()


def run_status(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, prometheus_url: str, *extra: str
) -> tuple[int, str, str]:
    argv = ["status", "local", "--kubeconfig", str(tmp_path / "kubeconfig")]
    code = main([*argv, "--prometheus", prometheus_url, *extra])
    out, err = capsys.readouterr()
    return code, out, err


def test_the_command_prints_the_json_of_both_sources(
    fake_kubectl: Path,
    prometheus: StandIn,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    (fake_kubectl / "answer").write_text(json.dumps(deployment_list()))
    code, out, err = run_status(capsys, tmp_path, prometheus.url, "--json")
    assert (code, err) == (0, "")
    document = json.loads(out)
    assert set(document) == JSON_KEYS
    assert [m["readyReplicas"] for m in document["models"]] == [1]
    assert [m["digest"] for m in document["models"]] == [DIGEST]


def test_the_command_draws_the_screen(
    fake_kubectl: Path,
    prometheus: StandIn,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("COLUMNS", "160")
    (fake_kubectl / "answer").write_text(json.dumps(deployment_list()))
    code, out, err = run_status(capsys, tmp_path, prometheus.url)
    assert (code, err) == (0, "")
    assert MODEL in out and "a5fd3b62230a" in out and "LlamafleetQueueGrowing" in out


def test_an_unreachable_api_server_is_one_line_and_exit_1(
    fake_kubectl: Path,
    prometheus: StandIn,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    code, out, err = run_status(capsys, tmp_path, prometheus.url, "--json")
    assert code == 1
    assert err.splitlines() == [
        "status local: API server: kubectl get deployments --all-namespaces -l "
        f"{DEPLOYMENT_SELECTOR}: The connection to the server 127.0.0.1:1 was refused - did you "
        "specify the right host or port?"
    ]
    document = json.loads(out)
    assert document["errors"]["apiServer"] and document["errors"]["prometheus"] is None
    # What Prometheus gave is still shown.
    assert [(m["model"], m["queue"], m["readyReplicas"]) for m in document["models"]] == [
        (MODEL, 3.0, None)
    ]


def test_an_unreachable_prometheus_is_one_warning_line_and_exit_0(
    fake_kubectl: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (fake_kubectl / "answer").write_text(json.dumps(deployment_list()))
    closed = f"http://127.0.0.1:{free_port()}"
    code, out, err = run_status(capsys, tmp_path, closed)
    assert code == 0
    assert err.splitlines() == [
        f"status local: Prometheus: cannot reach {closed}: [Errno 111] Connection refused"
    ]
    assert MODEL in out and "Traceback" not in out + err


# An HTTP error Prometheus (or a proxy in front of it) answers: status, body, the line's why.
HTTP_ERRORS = [
    (503, b"Service Unavailable\n", "HTTP 503: Service Unavailable"),
    (
        422,
        b'{"status":"error","errorType":"execution","error":"query timed out"}',
        "HTTP 422: query timed out",
    ),
    (404, b"", "HTTP 404: Not Found"),
]


@pytest.mark.parametrize("error", HTTP_ERRORS, ids=lambda e: str(e[0]))
def test_a_prometheus_error_status_is_one_line(
    fake_kubectl: Path,
    prometheus: StandIn,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    error: tuple[int, bytes, str],
) -> None:
    (fake_kubectl / "answer").write_text(json.dumps(deployment_list()))
    prometheus.handler.status, prometheus.handler.body, why = error
    code, out, err = run_status(capsys, tmp_path, prometheus.url, "--json")
    assert code == 0
    assert err.splitlines() == [f"status local: Prometheus: {prometheus.url}: {why}"]
    assert json.loads(out)["models"][0]["queue"] is None


def test_a_prometheus_that_is_not_prometheus_is_one_line(tmp_path: Path) -> None:
    with pytest.raises(SourceError, match="not an http"):
        HttpPrometheus("file:///etc/passwd").get("/api/v1/query", {"query": "up"})
    assert status_command.decode_answer(b'{"status":"success","data":[]}', "p") == []
    with pytest.raises(SourceError, match="p: the answer is not Prometheus' JSON"):
        status_command.decode_answer(b"<html>", "p")
    with pytest.raises(SourceError, match="p: bad_data: parse error"):
        status_command.decode_answer(
            b'{"status":"error","errorType":"bad_data","error":"parse error"}', "p"
        )


def test_a_listener_that_does_not_speak_http_is_one_line(
    fake_kubectl: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """An SSH banner (or an answer cut short) where Prometheus should be: one line, no
    traceback."""
    (fake_kubectl / "answer").write_text(json.dumps(deployment_list()))
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)

    def banner() -> None:
        while True:
            try:
                connection, _ = listener.accept()
            except OSError:
                return
            connection.sendall(b"SSH-2.0-OpenSSH_9.2\r\n")
            connection.close()

    threading.Thread(target=banner, daemon=True).start()
    url = f"http://127.0.0.1:{listener.getsockname()[1]}"
    try:
        code, out, err = run_status(capsys, tmp_path, url)
    finally:
        listener.close()
    assert code == 0
    assert err.splitlines() == [
        f"status local: Prometheus: {url}: not a whole HTTP answer (BadStatusLine)"
    ]
    assert "Traceback" not in out + err


def test_both_sources_down_is_two_lines_one_each(
    fake_kubectl: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = run_status(capsys, tmp_path, f"http://127.0.0.1:{free_port()}")
    assert code == 1
    lines = err.splitlines()
    assert [line.split(": ")[1] for line in lines] == [SOURCE_API_SERVER, SOURCE_PROMETHEUS]
    assert "API server did not answer" in out and "Prometheus did not answer" in out


def test_an_unknown_stack_or_cluster_is_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["status", "no-such-stack"]) == 1
    (line,) = capsys.readouterr().err.splitlines()
    assert "Pulumi.no-such-stack.yaml: llamafleet:: cannot read the stack file" in line
    assert main(["status", "hybrid", "--cluster", "nope"]) == 1
    (line,) = capsys.readouterr().err.splitlines()
    assert line.endswith(
        "Pulumi.hybrid.yaml: llamafleet:clusters: no cluster 'nope'; it has: dc1, burst"
    )
