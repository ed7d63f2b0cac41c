"""What the Gateway component configures LiteLLM and the plugin with, from the backends."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from llamafleet import REPO_ROOT
from llamafleet.components.gateway import key_hashes, keys_mark
from llamafleet.components.gateway_config import (
    Backend,
    TeamLimits,
    gateway_command,
    internal_key_env,
    litellm_config,
    routes,
)
from llamafleet_gateway.proxy import trust_bundle

BACKENDS = [
    Backend("a", "m", "cpu", "http://m-cpu.llamafleet-a.svc.cluster.local:8080/v1", 4, 512),
    Backend("a", "m", "gpu", "http://m-gpu.llamafleet-a.svc.cluster.local:8080/v1", 8, 512),
    Backend("b", "m", "cpu", "http://m-cpu.llamafleet-b.svc.cluster.local:8080/v1", 2, 64),
]


def test_each_team_model_tier_is_its_own_group_with_its_teams_key() -> None:
    config = litellm_config(BACKENDS, 120)
    groups = {d["model_name"]: d["litellm_params"] for d in config["model_list"]}
    assert sorted(groups) == ["a/m/cpu", "a/m/gpu", "b/m/cpu"]
    assert groups["a/m/cpu"]["api_key"] == "os.environ/LLAMAFLEET_KEY_A"
    assert groups["b/m/cpu"]["api_key"] == "os.environ/LLAMAFLEET_KEY_B"
    assert groups["b/m/cpu"]["api_base"].startswith("http://m-cpu.llamafleet-b.")
    # No retry of its own: a retried generation would run twice.
    assert {p["max_retries"] for p in groups.values()} == {0}
    assert {p["timeout"] for p in groups.values()} == {120}


def test_a_models_tiers_fall_back_in_order_and_never_across_teams() -> None:
    fallbacks = litellm_config(BACKENDS, 120)["router_settings"]["fallbacks"]
    assert fallbacks == [{"a/m/cpu": ["a/m/gpu"]}]


def test_redis_is_used_only_when_given_and_its_password_comes_from_the_environment() -> None:
    assert "coordination_redis" not in litellm_config(BACKENDS, 120)["general_settings"]
    redis = litellm_config(BACKENDS, 120, ("redis", 6379))["general_settings"]
    assert redis["coordination_redis"] == {
        "host": "redis",
        "port": 6379,
        "password": "os.environ/REDIS_PASSWORD",
    }


def test_the_config_holds_no_secret() -> None:
    text = json.dumps(litellm_config(BACKENDS, 120, ("redis", 6379)))
    assert "os.environ/" in text
    assert "master_key" not in text


@pytest.mark.parametrize(
    ("team", "variable"),
    [("a", "LLAMAFLEET_KEY_A"), ("data-science", "LLAMAFLEET_KEY_DATA_SCIENCE")],
)
def test_internal_key_variables_are_valid_names(team: str, variable: str) -> None:
    assert internal_key_env(team) == variable


def test_routes_keep_tier_order_capacity_cap_and_limits() -> None:
    table = routes(BACKENDS, {"b": TeamLimits(requests_per_minute=5)})
    a = table.teams["a"].models["m"]
    assert [(t.tier, t.capacity) for t in a.tiers] == [("cpu", 4), ("gpu", 8)]
    assert a.max_tokens == 512
    assert table.teams["b"].requests_per_minute == 5
    assert table.teams["a"].requests_per_minute is None


def test_the_gateway_holds_key_hashes_not_keys() -> None:
    hashes = key_hashes({"a": ["key-one", "key-two"], "b": ["key-three"]})
    assert "key-one" not in hashes and len(json.loads(hashes)) == 3
    assert set(json.loads(hashes).values()) == {"a", "b"}


def test_the_internal_keys_mark_changes_with_any_key_and_shows_none() -> None:
    mark = keys_mark({"a": "k1", "b": "k2"})
    assert mark != keys_mark({"a": "k1", "b": "k3"})
    assert "k1" not in mark and len(mark) == 16


def _args(tls: object) -> object:
    from llamafleet.components.gateway import GatewayArgs, GatewayConfig  # noqa: PLC0415

    return GatewayArgs(
        namespace="gw",
        config=GatewayConfig(),
        image="i",
        redis_image="r",
        backends=BACKENDS,
        limits={},
        team_keys={},
        internal_keys={},
        team_namespaces=[],
        monitoring_namespace="monitoring",
        request_timeout_seconds=60,
        exposure=None,
        tls=tls,  # type: ignore[arg-type]
    )


def test_the_in_cluster_url_follows_where_tls_ends() -> None:
    from llamafleet.components.gateway import GatewayTls, in_cluster_url  # noqa: PLC0415

    host = "llamafleet-gateway.gw.svc.cluster.local"
    arn = "arn:aws:acm:eu-west-1:123456789012:certificate/00000000-0000-0000-0000-000000000000"
    assert in_cluster_url(_args(None)) == f"http://{host}:4000/v1"  # type: ignore[arg-type]
    at_nlb = _args(GatewayTls(certificate_arn=arn))
    assert in_cluster_url(at_nlb) == f"http://{host}:443/v1"  # type: ignore[arg-type]
    at_pods = _args(GatewayTls(secret_name="tls"))
    assert in_cluster_url(at_pods) == f"https://{host}:443/v1"  # type: ignore[arg-type]


def test_the_image_and_native_runs_start_the_same_entrypoint() -> None:
    """The image's ENTRYPOINT is gateway_command's module, so the route allowlist the native
    tests prove is the one the pods run."""
    dockerfile = REPO_ROOT / "images" / "gateway" / "Dockerfile"
    entrypoint = [
        line.removeprefix("ENTRYPOINT ").strip()
        for line in dockerfile.read_text().splitlines()
        if line.startswith("ENTRYPOINT ")
    ][-1]
    assert json.loads(entrypoint) == gateway_command("python", [])


def test_a_peer_backend_asks_the_peer_gateway_for_its_group_with_the_peer_key() -> None:
    peer = Backend("a", "m", "gpu", "https://llm.burst.example/v1", 8, 512, peer="burst-1")
    config = litellm_config([BACKENDS[0], peer], 120)
    params = {d["model_name"]: d["litellm_params"] for d in config["model_list"]}
    assert params["a/m/gpu"] == params["a/m/gpu"] | {
        "model": "openai/a/m/gpu",
        "api_base": "https://llm.burst.example/v1",
        "api_key": "os.environ/LLAMAFLEET_PEER_KEY_BURST_1",
    }
    assert params["a/m/cpu"]["model"] == "openai/m"
    # The peer's tier falls back like any other, after the local one.
    assert {"a/m/cpu": ["a/m/gpu"]} in config["router_settings"]["fallbacks"]
    assert routes([BACKENDS[0], peer], {}).teams["a"].models["m"].tiers[1].peer == "burst-1"


def test_the_trust_bundle_keeps_the_public_cas_and_adds_the_peers(tmp_path: Path) -> None:
    public = tmp_path / "public.pem"
    public.write_text("PUBLIC\n")
    private = tmp_path / "private.pem"
    private.write_text("PRIVATE\n")
    bundle = trust_bundle(public, private, tmp_path / "bundle.pem")
    assert bundle.read_text() == "PUBLIC\nPRIVATE\n"
