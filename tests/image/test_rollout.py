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
from llamafleet.components.inference_pod import DRAIN_COMMAND
from llamafleet.components.server_args import API_KEY_FILE

pytestmark = pytest.mark.image

# Endpoint changes reach the stand-in this late; the pods' settle time (deregistrationSeconds,
# 5 s on `local`) covers it.
PROPAGATION_SECONDS = 3.0
SETTLE_SECONDS = 5
CLIENTS = 4
MAX_TOKENS = 24
STEADY_SECONDS = 8.0
# The old gateway's requests finish this long after the new one takes the traffic (the longest
# request here is a few seconds).
GATEWAY_DRAIN_SECONDS = 8.0
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
    own log, the model file the new server loaded and how long it took to be ready."""

    sent: int
    failures: list[str]
    steady: list[float]
    during: list[float]
    replaced_seconds: float
    drain_log: str
    new_model: str
    load_seconds: float

    def line(self, name: str) -> str:
        def pct(values: list[float], q: int) -> float:
            return statistics.quantiles(values, n=100)[q - 1] if len(values) > 1 else values[0]

        kinds = Counter(why.split(":")[0].split(" ")[0] for why in self.failures)
        return (
            f"{name}: {self.sent} requests, {len(self.failures)} failed {dict(kinds)}; replaced in "
            f"{self.replaced_seconds:.1f} s (new ready in {self.load_seconds:.1f} s); "
            f"p50/p99 {pct(self.steady, 50):.2f}/"
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

    def pod(
        self, name: str, extra: list[str], keys: tuple[str, ...] | None = None
    ) -> tuple[LlamaServer, Path]:
        """A server of the rendered argv (one thread: three share this machine's cores), and
        its key file, as its pod mounts them."""
        key_file = self.root / name / "api-keys" / Path(API_KEY_FILE).name
        key_file.parent.mkdir(parents=True, exist_ok=True)
        key_file.write_text("".join(f"{key}\n" for key in keys or (self.internal_key,)))
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


@dataclass(frozen=True)
class Change:
    """What the rollout changes: the new pod's extra argv, the keys its key file holds (None:
    the old pod's) and the key the gateway presents once the pods have rolled (None: the same;
    the gateway's own pods roll after the models', as the stack orders them)."""

    argv: tuple[str, ...] = ()
    new_keys: tuple[str, ...] | None = None
    gateway_key: str | None = None


def rollout(
    pods: Pods, service: ServiceProxy, root: Path, pre_stop: list[str] | None, change: Change
) -> Outcome:
    """Serve through the gateway from `steady` and `old`, then replace `old` by `new` (`change`)
    in a rolling update's order, with the preStop hook `pre_stop` (None: none); then, where the
    change gives the gateway a new key, replace the gateway by one presenting it."""
    # With a new key, the other replica has rolled already: this is the rollout's last pod.
    steady, _ = pods.pod(f"{root.name}-steady", [], change.new_keys if change.gateway_key else None)
    old, old_keys = pods.pod(f"{root.name}-old", [])
    new, _ = pods.pod(f"{root.name}-new", list(change.argv), change.new_keys)
    gateways: list[Gateway] = []
    load = None
    try:
        for server in (steady, old):
            server.start()
        for server in (steady, old):
            server.wait_ready()
        service.set_endpoints({steady.port, old.port}, now=True)
        backend = Backend("a", "m", "t", f"http://127.0.0.1:{service.port}/v1", 8, 64)
        client_key = f"ka-{secrets.token_hex(16)}"
        venv = gateway_venv()
        gateways.append(
            Gateway(venv, root / "gw", [backend], {"a": pods.internal_key}, {client_key: "a"})
        )
        load = Load(gateways[0].start().wait_ready(), client_key).start()
        time.sleep(STEADY_SECONDS)
        began = time.monotonic()
        new.start()
        new.wait_ready()
        loaded = time.monotonic() - began
        new_key = (change.new_keys or (pods.internal_key,))[-1]
        status, props = get(new.port, "/props", {"Authorization": f"Bearer {new_key}"})
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
        if change.gateway_key is not None:
            # The gateway's rollout: a new one with the new key takes the traffic, the old one
            # stops once its requests are done (its own preStop and grace).
            key = {"a": change.gateway_key}
            gateways.append(Gateway(venv, root / "gw2", [backend], key, {client_key: "a"}))
            load.gateway = gateways[-1].start().wait_ready()
            time.sleep(GATEWAY_DRAIN_SECONDS)
            gateways[0].stop()
            time.sleep(PROPAGATION_SECONDS)
    finally:
        if load is not None:
            load.stop()
        for gateway in gateways:
            gateway.stop()
        for server in (steady, old, new):
            if server.process is not None:
                server.stop()
    assert load is not None
    during = [seconds for start, seconds, _, _ in load.results if start >= began]
    steady_latency = [seconds for start, seconds, _, _ in load.results if start < began]
    failures = [why for _, _, ok, why in load.results if not ok]
    return Outcome(
        len(load.results), failures, steady_latency, during, replaced, drain_log, new_model, loaded
    )


def _settings(root: Path, model: Path, key: str) -> Change:
    # New argv: another default temperature.
    return Change(argv=("--temp", "0.7"))


def _model(root: Path, model: Path, key: str) -> Change:
    # Another GGUF: the same weights under another digest (the last --model wins).
    return Change(argv=("--model", str(renamed_model(model, root / "renamed.gguf"))))


def _key_rotation(root: Path, model: Path, key: str) -> Change:
    # internalKeys [old, new]: the new pods accept both, then the gateway presents the new one.
    new = secrets.token_hex(24)
    return Change(new_keys=(key, new), gateway_key=new)


CHANGES: dict[str, Callable[[Path, Path, str], Change]] = {
    "settings": _settings,
    "model": _model,
    "key rotation": _key_rotation,
}


@pytest.fixture(params=sorted(CHANGES))
def change(
    request: pytest.FixtureRequest, gemma: Path, pods: Pods, tmp_path: Path
) -> tuple[str, Change]:
    """(what changes, the change)."""
    name = str(request.param)
    return name, CHANGES[name](tmp_path, gemma, pods.internal_key)


def test_a_rollout_with_the_drain_hook_drops_no_request(
    pods: Pods,
    service: ServiceProxy,
    pre_stop: list[str],
    change: tuple[str, Change],
    tmp_path: Path,
) -> None:
    name, what = change
    outcome = rollout(pods, service, tmp_path / "drained", pre_stop, what)
    print(outcome.line(f"{name} change, preStop llama-drain"))
    assert outcome.new_model.endswith("renamed.gguf") == (name == "model"), outcome.new_model
    assert outcome.sent > 20
    assert outcome.failures == []
    # The hook let SIGTERM through once the server was idle, not at its bound.
    assert "idle after" in outcome.drain_log, outcome.drain_log


def test_without_the_hook_a_rollout_drops_requests(
    pods: Pods, service: ServiceProxy, tmp_path: Path
) -> None:
    settings = _settings(tmp_path, Path(), pods.internal_key)
    outcome = rollout(pods, service, tmp_path / "control", None, settings)
    print(outcome.line("control: SIGTERM without preStop"))
    assert outcome.failures, "the control run dropped nothing: the test could not fail"


def test_a_key_rotation_in_one_step_refuses_requests(
    pods: Pods, service: ServiceProxy, pre_stop: list[str], tmp_path: Path
) -> None:
    """Why internalKeys are named, two at a time: new pods that accept only the new key refuse
    the old gateway's requests until it switches (401), drain or not."""
    new = secrets.token_hex(24)
    one_step = Change(new_keys=(new,), gateway_key=new)
    outcome = rollout(pods, service, tmp_path / "one-step", pre_stop, one_step)
    print(outcome.line("control: key rotation in one step"))
    assert any(why.startswith("401") for why in outcome.failures), outcome.failures
