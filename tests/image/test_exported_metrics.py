"""The metric names of llama-server and the gateway, listed by running them: a real llama-server
(the rendered argv, the 270M model) behind the real gateway (the lock's LiteLLM, the plugin),
after traffic that touches every series the dashboards and alerts query (a request served, one
spilled past a full first tier, one refused by the team's limit). Every name
llamafleet.monitoring.metrics gives each binary is among the samples it exports, with the labels
the queries select on."""

from __future__ import annotations

import secrets
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from gateway_process import Gateway, gateway_venv
from llama_server import LlamaServer, ServerFactory, get
from support.promql import exposition_names, samples

from llamafleet.components.gateway_config import Backend, TeamLimits
from llamafleet.monitoring import metrics

pytestmark = pytest.mark.image

CHAT = "/v1/chat/completions"
LIMIT = 2  # requests per minute for the team: the third is refused


@dataclass(frozen=True)
class Exported:
    """What each process exported after the traffic: its /metrics text."""

    server: str
    gateway: str
    statuses: list[int]


def _chat(gateway: Gateway, key: str) -> int:
    body = {"model": "m", "messages": [{"role": "user", "content": "Say hi."}], "max_tokens": 4}
    return gateway.request("POST", CHAT, body, key)[0]


@pytest.fixture(scope="module")
def exported(
    make_server: ServerFactory, api_key: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Exported]:
    server: LlamaServer = make_server(extra=["--threads", "1", "--threads-batch", "1"])
    server.start().wait_ready()
    url = f"http://127.0.0.1:{server.port}/v1"
    # Tier t1 takes no request at once: every request spills to t2 (the same server).
    backends = [
        Backend("a", "m", "t1", url, capacity=0, max_tokens=16),
        Backend("a", "m", "t2", url, capacity=2, max_tokens=16),
    ]
    key = f"ka-{secrets.token_hex(20)}"
    gateway = Gateway(
        gateway_venv(),
        tmp_path_factory.mktemp("metrics-gateway"),
        backends,
        {"a": api_key},
        {key: "a"},
        {"a": TeamLimits(requests_per_minute=LIMIT)},
    ).start()
    try:
        gateway.wait_ready()
        statuses = [_chat(gateway, key) for _ in range(LIMIT + 1)]
        time.sleep(1)  # the plugin counts a request when LiteLLM logs it
        with urllib.request.urlopen(f"http://127.0.0.1:{gateway.metrics_port}/metrics") as got:
            gateway_text = got.read().decode()
        status, body = get(server.port, "/metrics", {"Authorization": f"Bearer {api_key}"})
        assert status == 200, body
        yield Exported(body.decode(), gateway_text, statuses)
    finally:
        gateway.stop()
        server.stop()


def test_the_traffic_was_served_spilled_and_limited(exported: Exported) -> None:
    assert exported.statuses == [200] * LIMIT + [429], exported.statuses


def test_llama_server_exports_every_name_the_fleet_queries(exported: Exported) -> None:
    assert metrics.EXPORTERS["llama-server"] - exposition_names(exported.server) == set()


def test_the_gateway_exports_every_name_the_fleet_queries(exported: Exported) -> None:
    assert metrics.EXPORTERS["gateway"] - exposition_names(exported.gateway) == set()


def test_the_gateway_labels_are_the_ones_the_queries_select(exported: Exported) -> None:
    def labels(name: str) -> list[dict[str, str]]:
        return [found for found, value in samples(exported.gateway, name) if value > 0]

    served = {"team": "a", "model": "m", "tier": "t2"}
    assert labels(metrics.GATEWAY_REQUESTS) == [{**served, "outcome": "ok"}]
    assert {s["kind"] for s in labels(metrics.GATEWAY_TOKENS)} == {"prompt", "completion"}
    assert labels(metrics.GATEWAY_SPILLS) == [served]
    assert labels(metrics.GATEWAY_REJECTED) == [{"team": "a", "reason": "rate_limit"}]
    in_flight = samples(exported.gateway, metrics.DEMAND)
    assert in_flight == [(served, 0.0)], in_flight
