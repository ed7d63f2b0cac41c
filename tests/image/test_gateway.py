"""The gateway end to end: real LiteLLM gateway processes (the pinned lock, the plugin, the
config the Gateway component renders) in front of real llama-server processes serving the 270M
model with the rendered argv, and a real redis-server for the shared limits.

Team a calls model `m`, served by two tiers (t1: one slot, t2); team b calls `m-b`. Each team's
servers accept only that team's internal key, so a request routed to the wrong team's server
would fail with 401, and which server answered is read from each server's own /metrics.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import math
import secrets
import threading
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path

import pytest
from gateway_process import Gateway, Redis, gateway_venv, self_signed
from llama_server import LlamaServer, get, localize_argv
from support.loopback import free_port

from llamafleet.components.gateway_config import Backend, TeamLimits, peer_key_env
from llamafleet.components.server_args import API_KEY_FILE
from llamafleet_gateway import environment
from llamafleet_gateway.routes import PEER

pytestmark = pytest.mark.image

CAP_A, CAP_B = 300, 16
LIMIT_B = 4  # requests per minute for team b
CHAT = "/v1/chat/completions"


@dataclass
class Fleet:
    a1: LlamaServer
    a2: LlamaServer
    b: LlamaServer
    keys: dict[str, str]  # team -> its client key
    internal: dict[str, str]  # team -> the key its servers accept
    backends: list[Backend]
    limits: dict[str, TeamLimits]


def _server(
    payload: Path, argv: list[str], model_root: Path, root: Path, key: str, *, extra: list[str]
) -> LlamaServer:
    key_file = root / "api-keys" / Path(API_KEY_FILE).name
    key_file.parent.mkdir(parents=True)
    key_file.write_text(f"{key}\n")
    port = free_port()
    local = localize_argv(argv, model_root=model_root, key_file=key_file, port=port)
    local[0] = str(payload / "llama-server")
    # Two threads each: three servers share this machine's cores.
    return LlamaServer(
        [*local, "--threads", "1", "--threads-batch", "1", *extra], port, root / "server.log"
    )


def _backend(
    team: str, model: str, tier: str, server: LlamaServer, *, capacity: int, cap: int
) -> Backend:
    return Backend(team, model, tier, f"http://127.0.0.1:{server.port}/v1", capacity, cap)


@pytest.fixture(scope="module")
def venv() -> Path:
    return gateway_venv()


@pytest.fixture(scope="module")
def fleet(
    payload: Path,
    argv: list[str],
    mounts: tuple[Path, Path],
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Fleet]:
    model_root, _ = mounts
    root = tmp_path_factory.mktemp("fleet")
    internal = {"a": secrets.token_hex(24), "b": secrets.token_hex(24)}
    a1 = _server(payload, argv, model_root, root / "a1", internal["a"], extra=["--parallel", "1"])
    a2 = _server(payload, argv, model_root, root / "a2", internal["a"], extra=[])
    b = _server(payload, argv, model_root, root / "b", internal["b"], extra=[])
    for server in (a1, a2, b):
        server.start()
    try:
        for server in (a1, a2, b):
            server.wait_ready()
        backends = [
            _backend("a", "m", "t1", a1, capacity=1, cap=CAP_A),
            _backend("a", "m", "t2", a2, capacity=2, cap=CAP_A),
            _backend("b", "m-b", "t1", b, capacity=2, cap=CAP_B),
        ]
        keys = {"a": f"ka-{secrets.token_hex(20)}", "b": f"kb-{secrets.token_hex(20)}"}
        yield Fleet(a1, a2, b, keys, internal, backends, {"b": TeamLimits(LIMIT_B)})
    finally:
        for server in (a1, a2, b):
            if server.process is not None:
                server.stop()


def _gateways(
    venv: Path, fleet: Fleet, root: Path, redis: Redis | None, count: int
) -> list[Gateway]:
    gateways = [
        Gateway(
            venv,
            root / f"gw{i}",
            fleet.backends,
            fleet.internal,
            {key: team for team, key in fleet.keys.items()},
            fleet.limits,
            redis,
        ).start()
        for i in range(count)
    ]
    return [gateway.wait_ready() for gateway in gateways]


@pytest.fixture(scope="module")
def redis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Redis]:
    server = Redis().start(tmp_path_factory.mktemp("redis"))
    yield server
    server.stop()


@pytest.fixture(scope="module")
def pair(
    venv: Path, fleet: Fleet, redis: Redis, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[list[Gateway]]:
    """Two gateway processes sharing one Redis, as two replicas of a cluster's gateway."""
    gateways = _gateways(venv, fleet, tmp_path_factory.mktemp("pair"), redis, 2)
    yield gateways
    for gateway in gateways:
        gateway.stop()


def chat(
    gateway: Gateway, key: str, model: str, **extra: object
) -> tuple[int, dict[str, str], dict[str, object]]:
    body = {"model": model, "messages": [{"role": "user", "content": "Say hi."}], **extra}
    status, headers, raw = gateway.request("POST", CHAT, body, key)
    return status, headers, json.loads(raw or b"{}")


def counter(server: LlamaServer, key: str, name: str = "llamacpp:prompt_tokens_total") -> float:
    status, body = get(server.port, "/metrics", {"Authorization": f"Bearer {key}"})
    assert status == 200, body
    for line in body.decode().splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    raise AssertionError(f"{name} not in /metrics")


def served_by(fleet: Fleet, action: object) -> set[str]:
    """Which servers' prompt counters moved while `action()` ran."""
    servers = {"a1": (fleet.a1, "a"), "a2": (fleet.a2, "a"), "b": (fleet.b, "b")}
    before = {n: counter(s, fleet.internal[t]) for n, (s, t) in servers.items()}
    action()  # type: ignore[operator]
    return {n for n, (s, t) in servers.items() if counter(s, fleet.internal[t]) > before[n]}


def test_each_team_reaches_only_its_own_deployment(pair: list[Gateway], fleet: Fleet) -> None:
    gateway = pair[0]
    results: list[int] = []
    assert served_by(fleet, lambda: results.append(chat(gateway, fleet.keys["a"], "m")[0])) == {
        "a1"
    }
    assert served_by(fleet, lambda: results.append(chat(gateway, fleet.keys["b"], "m-b")[0])) == {
        "b"
    }
    assert results == [200, 200]


def test_a_misrouted_request_would_fail_with_401(fleet: Fleet) -> None:
    """The teams' servers hold different internal keys: team a's key opens only a's."""
    headers = {"Authorization": f"Bearer {fleet.internal['a']}"}
    assert get(fleet.b.port, "/v1/models", headers)[0] == 401
    assert get(fleet.a1.port, "/v1/models", headers)[0] == 200


def test_a_bad_key_gets_an_openai_style_401(pair: list[Gateway]) -> None:
    body = {"model": "m", "messages": [{"role": "user", "content": "hi"}]}
    answers = {key: pair[0].request("POST", CHAT, body, key) for key in ("wrong", "", None)}
    assert {key: status for key, (status, _, _) in answers.items()} == {
        "wrong": 401,
        "": 401,
        None: 401,
    }, {key: raw[:300] for key, (_, _, raw) in answers.items()}
    for _, _, raw in answers.values():
        assert json.loads(raw)["error"]["code"] == "401"


def test_a_model_the_team_may_not_call_is_404(pair: list[Gateway], fleet: Fleet) -> None:
    for model in ("m-b", "no-such-model"):
        status, _, body = chat(pair[0], fleet.keys["a"], model)
        assert status == 404, body
        assert "error" in body and "does not exist" in str(body["error"])


def test_models_lists_the_callers_models_only(pair: list[Gateway], fleet: Fleet) -> None:
    for team, expected in (("a", ["m"]), ("b", ["m-b"])):
        status, _, raw = pair[1].request("GET", "/v1/models", key=fleet.keys[team])
        assert status == 200
        assert [entry["id"] for entry in json.loads(raw)["data"]] == expected


@pytest.mark.parametrize(
    "path",
    [
        "/slots",
        "/props",
        "/metrics",
        "/health",
        "/key/generate",
        "/model/info",
        "/v1/slots",
        "/ui",
        "/docs",
    ],
)
def test_only_the_openai_routes_are_served_to_a_team_key(
    pair: list[Gateway], fleet: Fleet, path: str
) -> None:
    for method in ("GET", "POST"):
        status, headers, body = pair[0].request(method, path, {}, fleet.keys["a"])
        if status in (301, 302, 307, 308):  # LiteLLM redirects /ui to /ui/: follow it once
            status, _, body = pair[0].request(method, headers["location"], {}, fleet.keys["a"])
        assert status in (401, 404, 405), (method, path, status, body[:200])


def test_a_websocket_is_closed_before_litellm_sees_it(pair: list[Gateway], fleet: Fleet) -> None:
    """LiteLLM serves realtime websockets; no OpenAI route the gateway serves is one."""
    connection = pair[0].connection(10)
    connection.request(
        "GET",
        "/v1/realtime?model=m",
        headers={
            "Authorization": f"Bearer {fleet.keys['a']}",
            "Connection": "Upgrade",
            "Upgrade": "websocket",
            "Sec-WebSocket-Version": "13",
            "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ==",
        },
    )
    status = connection.getresponse().status
    connection.close()
    assert status != 101 and status >= 400, status


@pytest.mark.parametrize(
    "path",
    [
        "/",
        "/routes",
        "/openapi.json",
        "/docs",
        "/public/model_hub",
        "/public/v1/model_hub",
        "/public/model_hub/info",
        "/.well-known/litellm-ui-config",
        "/config/yaml",
        "/test",
    ],
)
def test_litellm_public_routes_are_not_served_without_a_key(
    pair: list[Gateway], fleet: Fleet, path: str
) -> None:
    """LiteLLM serves these without a key (its model hub would list every team's groups); the
    entrypoint's allowlist answers 404 before LiteLLM sees them."""
    status, _, body = pair[0].request("GET", path)
    assert status == 404, (path, status, body[:200])
    assert b"m-b" not in body and b"a/m/" not in body


def test_health_routes_answer_without_litellm_details(pair: list[Gateway]) -> None:
    for path in ("/health/liveliness", "/health/readiness"):
        status, _, body = pair[0].request("GET", path)
        assert status == 200, (path, body)
        assert b"version" not in body and b"callbacks" not in body, body


def test_the_team_limit_is_shared_by_the_gateway_replicas(
    pair: list[Gateway], fleet: Fleet
) -> None:
    """Limit L: ceil(L/2)+1 requests to each of two gateways sharing Redis: one is refused."""
    each = math.ceil(LIMIT_B / 2) + 1
    answers = [
        chat(gateway, fleet.keys["b"], "m-b", max_tokens=1) for _ in range(each) for gateway in pair
    ]
    refused = [headers for status, headers, _ in answers if status == 429]
    assert refused, [status for status, _, _ in answers]
    assert all(int(headers["retry-after"]) > 0 for headers in refused)
    assert sum(status == 200 for status, _, _ in answers) <= LIMIT_B
    # A refusal is counted as one, not as a failed request, and leaves no demand behind.
    time.sleep(1)
    samples = [gateway_metrics(gateway) for gateway in pair]
    rejected = 'llamafleet_gateway_rejected_total{reason="rate_limit",team="b"}'
    assert sum(s.get(rejected, 0) for s in samples) == len(refused), samples
    errors = 'llamafleet_gateway_requests_total{model="m-b",outcome="error",team="b",tier="t1"}'
    assert all(s.get(errors, 0) == 0 for s in samples), samples
    in_flight = 'llamafleet_gateway_requests_in_flight{model="m-b",team="b",tier="t1"}'
    assert all(s[in_flight] == 0 for s in samples)


def test_without_redis_each_gateway_counts_alone(
    venv: Path, fleet: Fleet, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """The control: the same traffic to two gateways that share no Redis sees no 429."""
    gateways = _gateways(venv, fleet, tmp_path_factory.mktemp("alone"), None, 2)
    try:
        each = math.ceil(LIMIT_B / 2) + 1
        statuses = [
            chat(gateway, fleet.keys["b"], "m-b", max_tokens=1)[0]
            for _ in range(each)
            for gateway in gateways
        ]
        assert 429 not in statuses and set(statuses) == {200}, statuses
    finally:
        for gateway in gateways:
            gateway.stop()


def stream(
    gateway: Gateway, key: str, model: str, max_tokens: int
) -> tuple[float, float, int, str]:
    """(seconds to the first content chunk, seconds to the end, chunks, finish_reason) of one
    streamed chat completion, read as it arrives."""
    body = {
        "model": model,
        "messages": [{"role": "user", "content": "Count from 1 to 1000, one number per line."}],
        "max_tokens": max_tokens,
        "stream": True,
        "ignore_eos": True,
    }
    connection = http.client.HTTPConnection("127.0.0.1", gateway.port, timeout=300)
    start = time.monotonic()
    connection.request(
        "POST",
        CHAT,
        json.dumps(body),
        {"Authorization": f"Bearer {key}", "Content-Type": "application/json"},
    )
    response = connection.getresponse()
    assert response.status == 200, response.read()
    first, chunks, finish = 0.0, 0, ""
    for raw in response:
        line = raw.decode().strip()
        if not line.startswith("data: ") or line == "data: [DONE]":
            continue
        choice = json.loads(line.removeprefix("data: "))["choices"]
        if choice and choice[0].get("delta", {}).get("content"):
            chunks += 1
            first = first or time.monotonic() - start
        if choice and choice[0].get("finish_reason"):
            finish = choice[0]["finish_reason"]
    connection.close()
    return first, time.monotonic() - start, chunks, finish


def test_a_long_stream_passes_through_unbuffered(pair: list[Gateway], fleet: Fleet) -> None:
    first, total, chunks, finish = stream(pair[0], fleet.keys["a"], "m", 256)
    assert chunks >= 200, (chunks, finish)
    assert first < total / 2, (first, total)


@pytest.mark.parametrize(
    "requested",
    [{"max_tokens": CAP_B * 4}, {}, {"n_predict": CAP_B * 4}, {"max_completion_tokens": 9999}],
    ids=["max_tokens above", "omitted", "llama-server's n_predict", "max_completion_tokens"],
)
def test_a_length_above_the_cap_or_omitted_ends_within_the_cap(
    venv: Path, fleet: Fleet, tmp_path_factory: pytest.TempPathFactory, requested: dict[str, int]
) -> None:
    gateway = _gateways(venv, fleet, tmp_path_factory.mktemp("cap"), None, 1)[0]
    try:
        extra: dict[str, object] = {"ignore_eos": True, **requested}
        status, _, body = chat(gateway, fleet.keys["b"], "m-b", **extra)
        assert status == 200, body
        assert body["usage"]["completion_tokens"] == CAP_B, body  # type: ignore[index]
    finally:
        gateway.stop()


def test_a_full_first_tier_spills_to_the_next(pair: list[Gateway], fleet: Fleet) -> None:
    """Tier t1 has one slot: while a long stream holds it, the next request goes to t2."""
    gateway = pair[1]
    holding = threading.Thread(target=stream, args=(gateway, fleet.keys["a"], "m", 200))

    def next_request() -> None:
        holding.start()
        time.sleep(1.0)
        assert chat(gateway, fleet.keys["a"], "m", max_tokens=4)[0] == 200

    moved = served_by(fleet, next_request)
    holding.join()
    assert moved == {"a1", "a2"}, moved
    spills = 'llamafleet_gateway_spills_total{model="m",team="a",tier="t2"}'
    assert gateway_metrics(gateway)[spills] >= 1


def _held_at_one_then_sent_to_the_other(gateways: list[Gateway], fleet: Fleet) -> set[str]:
    """Which servers answered while a long stream through gateways[0] held t1's one slot and a
    second request went through gateways[1] (after the replicas shared their counts)."""
    holding = threading.Thread(target=stream, args=(gateways[0], fleet.keys["a"], "m", 200))

    def next_request() -> None:
        holding.start()
        time.sleep(2.0)  # several SHARE_SECONDS
        assert chat(gateways[1], fleet.keys["a"], "m", max_tokens=4)[0] == 200

    moved = served_by(fleet, next_request)
    holding.join()
    return moved


def test_a_tier_full_through_one_replica_spills_at_the_other(
    pair: list[Gateway], fleet: Fleet
) -> None:
    """The replicas share their requests in flight through Redis: t1 is full wherever its one
    slot was taken, so the other replica sends the next request to t2."""
    assert _held_at_one_then_sent_to_the_other(pair, fleet) == {"a1", "a2"}


def test_without_redis_each_replica_sees_only_its_own_requests(
    venv: Path, fleet: Fleet, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """The control: replicas that share no Redis each send to t1, which queues the second."""
    gateways = _gateways(venv, fleet, tmp_path_factory.mktemp("unshared"), None, 2)
    try:
        assert _held_at_one_then_sent_to_the_other(gateways, fleet) == {"a1"}
    finally:
        for gateway in gateways:
            gateway.stop()


def test_an_unreachable_redis_leaves_each_replica_counting_alone(
    venv: Path, fleet: Fleet, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """Sharing is best effort: with its Redis gone, a replica still routes and serves."""
    root = tmp_path_factory.mktemp("no-redis")
    keys = {key: team for team, key in fleet.keys.items()}
    nowhere = {environment.REDIS: f"127.0.0.1:{free_port()}"}
    gateway = Gateway(venv, root / "gw", fleet.backends, fleet.internal, keys, env=nowhere).start()
    try:
        gateway.wait_ready()
        for _ in range(2):
            assert chat(gateway, fleet.keys["b"], "m-b", max_tokens=2)[0] == 200
        deadline = time.monotonic() + 20
        while "in-flight counts not shared" not in gateway.log_text():
            assert time.monotonic() < deadline, gateway.log_text()[-2000:]
            time.sleep(0.5)
    finally:
        gateway.stop()


def test_keys_change_at_the_gateway_without_a_model_reload(
    pair: list[Gateway], fleet: Fleet
) -> None:
    gateway = pair[0]
    servers = (fleet.a1, fleet.a2)
    pids = [server.process.pid for server in servers if server.process]
    added = f"ka-new-{secrets.token_hex(16)}"
    gateway.set_keys({added: "a", fleet.keys["b"]: "b"})
    try:
        assert chat(gateway, added, "m", max_tokens=2)[0] == 200
        assert chat(gateway, fleet.keys["a"], "m", max_tokens=2)[0] == 401
    finally:
        gateway.set_keys({key: team for team, key in fleet.keys.items()})
    assert [server.process.pid for server in servers if server.process] == pids
    assert all(server.process and server.process.poll() is None for server in servers)
    assert all(server.log_text().count("model loaded") <= 1 for server in servers)


def test_a_client_chosen_call_id_cannot_confuse_the_demand_count(
    pair: list[Gateway], fleet: Fleet
) -> None:
    """LiteLLM takes litellm_call_id from the client's x-litellm-call-id header: two requests
    sharing one must still each count once, and leave nothing in flight."""
    gateway = pair[1]

    def one() -> None:
        body = {"model": "m", "max_tokens": 8, "messages": [{"role": "user", "content": "Hi"}]}
        connection = gateway.connection()
        headers = {
            "Authorization": f"Bearer {fleet.keys['a']}",
            "Content-Type": "application/json",
            "x-litellm-call-id": "same-id",
        }
        connection.request("POST", CHAT, json.dumps(body), headers)
        assert connection.getresponse().status == 200

    threads = [threading.Thread(target=one) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    time.sleep(1)  # LiteLLM logs success after the response
    in_flight = {k: v for k, v in gateway_metrics(gateway).items() if "in_flight" in k}
    assert in_flight and set(in_flight.values()) == {0.0}, in_flight


@dataclass
class Clusters:
    """Two clusters' gateways, as in the hybrid stack: `here` (dc1) serves team a's tier t1
    and reaches t2 and team b's model through `there` (burst), which serves TLS and accepts
    `peer_key` from other gateways."""

    here: Gateway
    there: Gateway
    peer_key: str


@pytest.fixture(scope="module")
def clusters(
    venv: Path, fleet: Fleet, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Clusters]:
    root = tmp_path_factory.mktemp("clusters")
    peer_key = secrets.token_hex(24)
    callers = {key: team for team, key in fleet.keys.items()}
    a1, a2, b = fleet.backends
    there = Gateway(
        venv,
        root / "burst",
        [a2, b],
        fleet.internal,
        {**callers, peer_key: PEER},
        tls_dir=self_signed(root / "burst-tls"),
    ).start()
    peer_url = f"https://127.0.0.1:{there.port}/v1"
    here = Gateway(
        venv,
        root / "dc1",
        [a1, *(replace(x, base_url=peer_url, peer="burst") for x in (a2, b))],
        {"a": fleet.internal["a"]},  # team b has no server here
        callers,
        # The other gateway's certificate is trusted as the Gateway component trusts a
        # peer's private CA.
        env={peer_key_env("burst"): peer_key, **trusting(there)},
    ).start()
    try:
        yield Clusters(here.wait_ready(), there.wait_ready(), peer_key)
    finally:
        here.stop()
        there.stop()


def trusting(peer: Gateway) -> dict[str, str]:
    """The environment that makes a gateway trust `peer`'s self-signed certificate as a
    private CA: the ConfigMap file the entrypoint adds to the public CAs."""
    assert peer.tls_dir is not None
    return {environment.PEER_CA: str(peer.tls_dir / "tls.crt")}


def test_a_team_with_no_tier_here_is_served_through_the_other_clusters_gateway(
    clusters: Clusters, fleet: Fleet
) -> None:
    moved = served_by(fleet, lambda: chat(clusters.here, fleet.keys["b"], "m-b", max_tokens=2))
    assert moved == {"b"}, moved
    # The other gateway counted it for its own tier: the demand its autoscaler scales on.
    samples = gateway_metrics(clusters.there)
    assert samples['llamafleet_gateway_requests_total{model="m-b",outcome="ok",team="b",tier="t1"}']


def test_the_other_clusters_tier_is_the_next_when_the_first_is_full(
    clusters: Clusters, fleet: Fleet
) -> None:
    holding = threading.Thread(target=stream, args=(clusters.here, fleet.keys["a"], "m", 200))

    def next_request() -> None:
        holding.start()
        time.sleep(1.0)
        assert chat(clusters.here, fleet.keys["a"], "m", max_tokens=4)[0] == 200

    moved = served_by(fleet, next_request)
    holding.join()
    assert moved == {"a1", "a2"}, moved


@pytest.mark.parametrize(
    ("model", "expected"),
    [("b/m-b/t1", 200), ("a/m/t1", 404), ("m-b", 404), ("c/m/t1", 404)],
    ids=["its group", "a group it forwards", "a public name", "unknown"],
)
def test_a_peer_key_reaches_only_the_groups_its_cluster_serves(
    clusters: Clusters, model: str, expected: int
) -> None:
    """A peer asks for a group and gets it only where that cluster serves it, so a request
    never bounces between gateways."""
    assert chat(clusters.there, clusters.peer_key, model, max_tokens=2)[0] == expected


def test_a_team_key_cannot_ask_for_a_group(clusters: Clusters, fleet: Fleet) -> None:
    assert chat(clusters.there, fleet.keys["b"], "b/m-b/t1", max_tokens=2)[0] == 404


def test_a_peer_whose_certificate_is_not_trusted_is_not_called(
    venv: Path, clusters: Clusters, fleet: Fleet, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """Without the peer's CA (a private one), its certificate fails verification: the request
    fails at the gateway and never reaches the peer's servers."""
    b = fleet.backends[2]
    peer_url = f"https://127.0.0.1:{clusters.there.port}/v1"
    gateway = Gateway(
        venv,
        tmp_path_factory.mktemp("untrusted") / "dc1",
        [replace(b, base_url=peer_url, peer="burst")],
        {},
        {key: team for team, key in fleet.keys.items()},
        env={peer_key_env("burst"): clusters.peer_key},
    ).start()
    try:
        gateway.wait_ready()
        requests: list[int] = []
        moved = served_by(
            fleet, lambda: requests.append(chat(gateway, fleet.keys["b"], "m-b", max_tokens=2)[0])
        )
        assert requests[0] >= 500 and not moved, (requests, moved)
    finally:
        gateway.stop()


def test_a_peer_key_is_no_key_at_the_gateway_that_issued_none(clusters: Clusters) -> None:
    """`here` accepts no peer key (in this pair only `there` has one): 401."""
    assert chat(clusters.here, clusters.peer_key, "b/m-b/t1", max_tokens=2)[0] == 401


@pytest.fixture
def sleeping(
    payload: Path,
    argv: list[str],
    mounts: tuple[Path, Path],
    fleet: Fleet,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[LlamaServer]:
    """Team a's server of a tier at zero replicas: not started (the test wakes it)."""
    root = tmp_path_factory.mktemp("sleeping")
    server = _server(payload, argv, mounts[0], root, fleet.internal["a"], extra=[])
    yield server
    if server.process is not None:
        server.stop()


def test_a_request_is_held_while_its_tier_wakes_from_zero(
    venv: Path, fleet: Fleet, sleeping: LlamaServer, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """A tier at zero replicas (`replicas.min: 0`): the request waits at the gateway, counted
    as demand for that tier (what KEDA wakes it on: at zero pods llama-server exports nothing),
    and is served once a replica is ready."""
    root = tmp_path_factory.mktemp("wake")
    backend = _backend("a", "z", "t0", sleeping, capacity=1, cap=CAP_A)
    gateway = Gateway(
        venv,
        root / "gw",
        [replace(backend, wake_seconds=120)],
        fleet.internal,
        {fleet.keys["a"]: "a"},
    ).start()
    answers: list[int] = []
    try:
        gateway.wait_ready()
        request = threading.Thread(
            target=lambda: answers.append(chat(gateway, fleet.keys["a"], "z", max_tokens=4)[0])
        )
        request.start()
        demand = 'llamafleet_gateway_requests_in_flight{model="z",team="a",tier="t0"}'
        deadline = time.monotonic() + 30
        while gateway_metrics(gateway).get(demand) != 1 and time.monotonic() < deadline:
            time.sleep(0.2)
        time.sleep(3)
        assert gateway_metrics(gateway).get(demand) == 1 and not answers, answers
        sleeping.start()  # the tier wakes
        request.join(timeout=180)
        assert answers == [200], answers
        assert gateway_metrics(gateway)[demand] == 0
    finally:
        gateway.stop()


def test_a_request_no_event_ends_stops_counting_after_the_longest_call(
    venv: Path, fleet: Fleet, sleeping: LlamaServer, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """A request LiteLLM never reports as ended (a stream whose client left before its first
    chunk) must not count as demand for ever: past the longest a call may last, it is dropped.
    Here two requests are held by a tier that never wakes, with the longest call 3 s."""
    backend = replace(_backend("a", "z", "t0", sleeping, capacity=1, cap=CAP_A), wake_seconds=60)
    gateway = Gateway(
        venv,
        tmp_path_factory.mktemp("longest") / "gw",
        [backend],
        fleet.internal,
        {fleet.keys["a"]: "a"},
        env={environment.LONGEST_CALL: "3"},
    ).start()
    demand = 'llamafleet_gateway_requests_in_flight{model="z",team="a",tier="t0"}'

    def held() -> None:
        with contextlib.suppress(OSError, http.client.HTTPException):  # the gateway stops
            chat(gateway, fleet.keys["a"], "z", max_tokens=2)

    try:
        gateway.wait_ready()
        for _ in range(2):
            threading.Thread(target=held, daemon=True).start()
            time.sleep(4)
        # The first is past 3 s when the second arrives: only the second still counts.
        assert gateway_metrics(gateway)[demand] == 1
    finally:
        gateway.stop()


def test_a_tier_that_never_sleeps_is_not_waited_for(
    venv: Path, fleet: Fleet, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """The control: without wake_seconds a tier with nothing listening fails at once."""
    dead = Backend("a", "z", "t0", f"http://127.0.0.1:{free_port()}/v1", 1, CAP_A)
    root = tmp_path_factory.mktemp("awake")
    keys = {fleet.keys["a"]: "a"}
    gateway = Gateway(venv, root / "gw", [dead], fleet.internal, keys).start()
    try:
        gateway.wait_ready()
        started = time.monotonic()
        status = chat(gateway, fleet.keys["a"], "z", max_tokens=4)[0]
        assert status >= 500 and time.monotonic() - started < 30, status
    finally:
        gateway.stop()


def test_a_stopped_first_tier_spills_to_the_next(pair: list[Gateway], fleet: Fleet) -> None:
    """Runs last: it stops t1's server for good."""
    fleet.a1.stop()
    failed = 'llamafleet_gateway_requests_total{model="m",outcome="error",team="a",tier="t1"}'
    errors_before = gateway_metrics(pair[0]).get(failed, 0)
    before = counter(fleet.a2, fleet.internal["a"])
    for _ in range(3):
        status, _, body = chat(pair[0], fleet.keys["a"], "m", max_tokens=4)
        assert status == 200, body
    assert counter(fleet.a2, fleet.internal["a"]) > before
    # Only the first request tried the stopped tier: it is passed over for a while after.
    assert gateway_metrics(pair[0]).get(failed, 0) - errors_before == 1


def gateway_metrics(gateway: Gateway) -> dict[str, float]:
    """The plugin's samples: `name{labels}` -> value."""
    with urllib.request.urlopen(f"http://127.0.0.1:{gateway.metrics_port}/metrics") as answer:
        lines = answer.read().decode().splitlines()
    return {
        line.rsplit(" ", 1)[0]: float(line.rsplit(" ", 1)[1])
        for line in lines
        if line.startswith("llamafleet_gateway_")
    }


def test_the_gateway_counts_per_team_model_and_tier(pair: list[Gateway]) -> None:
    samples = gateway_metrics(pair[0])
    assert samples['llamafleet_gateway_requests_total{model="m",outcome="ok",team="a",tier="t1"}']
    # The stopped t1's request was answered by t2: its success is counted there.
    assert samples['llamafleet_gateway_requests_total{model="m",outcome="ok",team="a",tier="t2"}']
    assert any(
        k.startswith('llamafleet_gateway_tokens_total{kind="completion",model="m"') for k in samples
    )
    in_flight = {k: v for k, v in samples.items() if "in_flight" in k}
    assert in_flight and set(in_flight.values()) == {0.0}, in_flight  # nothing left counted


def test_the_gateway_serves_tls_from_its_secret_files(
    venv: Path, fleet: Fleet, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """On-prem the gateway terminates TLS itself, with the Secret's tls.crt and tls.key."""
    root = tmp_path_factory.mktemp("tls")
    keys = {key: team for team, key in fleet.keys.items()}
    gateway = Gateway(
        venv, root / "gw", fleet.backends, fleet.internal, keys, tls_dir=self_signed(root / "tls")
    ).start()
    try:
        gateway.wait_ready()
        key_b = fleet.keys["b"]
        status, _, body = chat(gateway, key_b, "m-b", max_tokens=2)
        assert status == 200, body
        plain = http.client.HTTPConnection("127.0.0.1", gateway.port, timeout=10)
        try:
            plain.request("GET", "/v1/models", headers={"Authorization": f"Bearer {key_b}"})
            refused = plain.getresponse().status >= 400
        except (OSError, http.client.HTTPException):
            refused = True
        assert refused, "plain HTTP was served"
    finally:
        gateway.stop()
