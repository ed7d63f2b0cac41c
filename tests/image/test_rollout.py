"""A rolling update under load drops nothing: real requests (streamed and not) through the real
gateway to two real llama-server processes behind a Service stand-in that behaves like
kube-proxy (tests/image/service_proxy.py), while one of them is replaced in a rolling update's
order: the new pod ready, then the old one removed from the endpoints while its preStop hook runs
(the real llama-drain, as the pod spec renders it), then SIGTERM.

The control run skips the hook (SIGTERM right away, as a pod without a preStop would get): the
requests the old server holds are cut and new connections still reach it until the endpoint
removal propagates, so some requests fail, which shows the test can fail.

Each run's numbers (replacement time, latency during the rollout against steady state) are
printed for benchmarks/README.md (`pytest tests/image/test_rollout.py -s`).
"""

from __future__ import annotations

import http.client
import json
import secrets
import statistics
import subprocess
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from gateway_process import Gateway, gateway_venv
from llama_server import LlamaServer, get, localize_argv
from rendered_argv import local_pre_stop
from service_proxy import ServiceProxy
from support.loopback import free_port

from llamafleet.components.gateway_config import Backend
from llamafleet.components.inference_pod import DRAIN_COMMAND, DRAIN_QUIET_SECONDS
from llamafleet.components.server_args import API_KEY_FILE

pytestmark = pytest.mark.image

# Endpoint changes reach the stand-in this late; the pods' settle time (deregistrationSeconds,
# 5 s on `local`) covers it.
PROPAGATION_SECONDS = 3.0
SETTLE_SECONDS = 5
CLIENTS = 4
MAX_TOKENS = 24
STEADY_SECONDS = 8.0
COMPLETIONS = "/v1/completions"


@dataclass
class Load:
    """Clients sending completions back to back through the gateway, half of them streamed;
    each request's (start, seconds, ok, why)."""

    gateway: Gateway
    key: str
    results: list[tuple[float, float, bool, str]] = field(
        default_factory=list[tuple[float, float, bool, str]]
    )
    _stop: threading.Event = field(default_factory=threading.Event)
    _threads: list[threading.Thread] = field(default_factory=list[threading.Thread])

    def start(self) -> Load:
        for client in range(CLIENTS):
            thread = threading.Thread(target=self._client, args=(client % 2 == 0,), daemon=True)
            thread.start()
            self._threads.append(thread)
        return self

    def stop(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=120)

    def _client(self, streamed: bool) -> None:
        while not self._stop.is_set():
            start = time.monotonic()
            ok, why = self._one(streamed)
            self.results.append((start, time.monotonic() - start, ok, why))

    def _one(self, streamed: bool) -> tuple[bool, str]:
        body = {"model": "m", "prompt": "Once upon a time", "max_tokens": MAX_TOKENS}
        body["stream"] = streamed
        connection = http.client.HTTPConnection("127.0.0.1", self.gateway.port, timeout=120)
        try:
            connection.request(
                "POST",
                COMPLETIONS,
                json.dumps(body),
                {"Authorization": f"Bearer {self.key}", "Content-Type": "application/json"},
            )
            response = connection.getresponse()
            raw = response.read()
            if response.status != 200:
                return False, f"{response.status} {raw[:200]!r}"
            if streamed and not raw.rstrip().endswith(b"data: [DONE]"):
                return False, f"stream cut: {raw[-200:]!r}"
            if not streamed and not json.loads(raw)["choices"][0]["text"]:
                return False, "empty completion"
            return True, ""
        except (OSError, http.client.HTTPException, ValueError, KeyError) as exc:
            return False, f"{type(exc).__name__}: {exc}"
        finally:
            connection.close()


@dataclass(frozen=True)
class Outcome:
    """One rollout: requests sent and failed (with why), latencies in the steady phase and during
    the rollout, the replacement's seconds (new pod started to old pod gone), the drain's
    own log and the model file the new server loaded."""

    sent: int
    failures: list[str]
    steady: list[float]
    during: list[float]
    replaced_seconds: float
    drain_log: str
    new_model: str

    def line(self, name: str) -> str:
        def pct(values: list[float], q: int) -> float:
            return statistics.quantiles(values, n=100)[q - 1] if len(values) > 1 else values[0]

        kinds = Counter(why.split(":")[0].split(" ")[0] for why in self.failures)
        return (
            f"{name}: {self.sent} requests, {len(self.failures)} failed {dict(kinds)}; replaced in "
            f"{self.replaced_seconds:.1f} s; p50/p99 {pct(self.steady, 50):.2f}/"
            f"{pct(self.steady, 99):.2f} s steady, {pct(self.during, 50):.2f}/"
            f"{pct(self.during, 99):.2f} s during"
        )


@dataclass
class Pods:
    payload: Path
    argv: list[str]
    model_root: Path
    root: Path
    internal_key: str

    def pod(self, name: str, extra: list[str]) -> tuple[LlamaServer, Path]:
        """A server of the rendered argv (one thread: three share this machine's cores), and
        its key file, as its pod mounts them."""
        key_file = self.root / name / "api-keys" / Path(API_KEY_FILE).name
        key_file.parent.mkdir(parents=True, exist_ok=True)
        key_file.write_text(f"{self.internal_key}\n")
        port = free_port()
        local = localize_argv(self.argv, model_root=self.model_root, key_file=key_file, port=port)
        local[0] = str(self.payload / "llama-server")
        argv = [*local, "--threads", "1", "--threads-batch", "1", *extra]
        return LlamaServer(argv, port, self.root / name / "server.log"), key_file


@pytest.fixture(scope="module")
def pods(
    payload: Path,
    argv: list[str],
    mounts: tuple[Path, Path],
    tmp_path_factory: pytest.TempPathFactory,
) -> Pods:
    return Pods(payload, argv, mounts[0], tmp_path_factory.mktemp("rollout"), secrets.token_hex(24))


@pytest.fixture
def service(tmp_path: Path) -> Iterator[ServiceProxy]:
    proxy = ServiceProxy(PROPAGATION_SECONDS).start()
    yield proxy
    proxy.stop()


@pytest.fixture(scope="module")
def pre_stop(tmp_path_factory: pytest.TempPathFactory) -> list[str]:
    """The local stack's rendered preStop command: llama-drain PORT KEY_FILE SETTLE QUIET MAX."""
    command = local_pre_stop(tmp_path_factory.mktemp("render"))
    assert command[0] == DRAIN_COMMAND and command[3] == str(SETTLE_SECONDS), command
    return command


def _drain_argv(pods: Pods, pre_stop: list[str], server: LlamaServer, key_file: Path) -> list[str]:
    """The rendered hook with the local binary, port and key file."""
    _, _, _, settle, quiet, longest = pre_stop
    return [
        str(pods.payload / DRAIN_COMMAND),
        str(server.port),
        str(key_file),
        settle,
        quiet,
        longest,
    ]


def renamed_model(model: Path, target: Path) -> Path:
    """A copy of the GGUF `model` whose general.name differs in one byte: the same weights under
    another digest, as a model change brings."""
    data = bytearray(model.read_bytes())
    key = b"general.name"
    at = data.index(key) + len(key)
    # GGUF KV: key, then value type (u32, 8: string), length (u64), the string's bytes.
    assert int.from_bytes(data[at : at + 4], "little") == 8
    first = at + 12
    data[first] = ord("X") if data[first] != ord("X") else ord("Y")
    target.write_bytes(data)
    return target


def rollout(
    pods: Pods, service: ServiceProxy, root: Path, pre_stop: list[str] | None, change: list[str]
) -> Outcome:
    """Serve through the gateway from `steady` and `old`, then replace `old` by `new` (`change`:
    the argv that differs) in a rolling update's order, with the preStop hook `pre_stop` (None:
    none)."""
    steady, _ = pods.pod(f"{root.name}-steady", [])
    old, old_keys = pods.pod(f"{root.name}-old", [])
    new, _ = pods.pod(f"{root.name}-new", change)
    gateway = None
    load = None
    try:
        for server in (steady, old):
            server.start()
        for server in (steady, old):
            server.wait_ready()
        service.set_endpoints({steady.port, old.port}, now=True)
        backend = Backend("a", "m", "t", f"http://127.0.0.1:{service.port}/v1", 8, 64)
        client_key = f"ka-{secrets.token_hex(16)}"
        gateway = Gateway(
            gateway_venv(), root / "gateway", [backend], {"a": pods.internal_key}, {client_key: "a"}
        ).start()
        gateway.wait_ready()
        load = Load(gateway, client_key).start()
        time.sleep(STEADY_SECONDS)
        began = time.monotonic()
        new.start()
        new.wait_ready()
        status, props = get(new.port, "/props", {"Authorization": f"Bearer {pods.internal_key}"})
        assert status == 200, props
        new_model = str(json.loads(props)["model_path"])
        # Ready: the endpoints controller adds the new pod; then the Deployment deletes the old
        # one, which leaves the endpoints while its preStop hook runs.
        service.set_endpoints({steady.port, old.port, new.port})
        service.set_endpoints({steady.port, new.port})
        drain_log = ""
        if pre_stop is not None:
            hook = subprocess.run(
                _drain_argv(pods, pre_stop, old, old_keys),
                capture_output=True,
                text=True,
                timeout=600,
                check=False,
            )
            drain_log = hook.stderr.strip()
        old.stop()
        replaced = time.monotonic() - began
        time.sleep(PROPAGATION_SECONDS + 2)
    finally:
        if load is not None:
            load.stop()
        if gateway is not None:
            gateway.stop()
        for server in (steady, old, new):
            if server.process is not None:
                server.stop()
    assert load is not None
    during = [seconds for start, seconds, _, _ in load.results if start >= began]
    steady_latency = [seconds for start, seconds, _, _ in load.results if start < began]
    failures = [why for _, _, ok, why in load.results if not ok]
    return Outcome(
        len(load.results), failures, steady_latency, during, replaced, drain_log, new_model
    )


CHANGES: dict[str, Callable[[Path, Path], list[str]]] = {
    # New argv: another default temperature.
    "settings": lambda root, model: ["--temp", "0.7"],
    # Another GGUF: the same weights under another digest (the last --model wins).
    "model": lambda root, model: ["--model", str(renamed_model(model, root / "renamed.gguf"))],
}


@pytest.fixture(params=sorted(CHANGES))
def change(request: pytest.FixtureRequest, gemma: Path, tmp_path: Path) -> tuple[str, list[str]]:
    """(what changes, the new pod's extra argv)."""
    name = str(request.param)
    return name, CHANGES[name](tmp_path, gemma)


def test_a_rollout_with_the_drain_hook_drops_no_request(
    pods: Pods,
    service: ServiceProxy,
    pre_stop: list[str],
    change: tuple[str, list[str]],
    tmp_path: Path,
) -> None:
    name, argv = change
    outcome = rollout(pods, service, tmp_path / "drained", pre_stop, argv)
    print(outcome.line(f"{name} change, preStop llama-drain"))
    assert outcome.new_model.endswith("renamed.gguf") == (name == "model"), outcome.new_model
    assert outcome.sent > 20
    assert outcome.failures == []
    # The hook let SIGTERM through once the server was idle, not at its bound.
    assert "idle after" in outcome.drain_log, outcome.drain_log


def test_without_the_hook_a_rollout_drops_requests(
    pods: Pods, service: ServiceProxy, tmp_path: Path
) -> None:
    outcome = rollout(
        pods, service, tmp_path / "control", None, CHANGES["settings"](tmp_path, Path())
    )
    print(outcome.line("control: SIGTERM without preStop"))
    assert outcome.failures, "the control run dropped nothing: the test could not fail"
    assert DRAIN_QUIET_SECONDS > 5  # longer than llama-server's keep-alive
