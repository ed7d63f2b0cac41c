"""What the gateway is configured with, as plain data (no Pulumi): LiteLLM's proxy config and the
plugin's routing table, both from the backends a cluster's gateway routes to.

Each team x model x tier is one LiteLLM model group (`llamafleet_gateway.routes.group_name`) with
one deployment: on the gateway's own cluster, the in-cluster Service of that team's
InferenceService, called with the team's internal key; on another cluster, that cluster's
gateway (its load balancer, TLS), called with that gateway's peer key and asking for the same
group, which it serves from its own cluster only. Keys are environment variables of the
gateway's pod, from a Secret. The plugin maps a caller's team and the request's `model` to the
group (see llamafleet_gateway.litellm_plugin).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from llamafleet_gateway.routes import ModelRoute, Routes, TeamRoute, TierRoute, group_name

GATEWAY_PORT = 4000
METRICS_PORT = 9090
REDIS_PORT = 6379
CONFIG_DIR = "/etc/llamafleet/gateway"
KEYS_DIR = "/etc/llamafleet/gateway-keys"
ROUTES_FILE = "routes.json"
CONFIG_FILE = "config.yaml"
# The peers' private CAs (PEM), in the gateway's ConfigMap.
PEER_CA_FILE = "peer-ca.pem"
KEYS_FILE = "keys.json"
PLUGIN = "llamafleet_gateway.litellm_plugin"
# The gateway's entrypoint: LiteLLM's command line behind the route allowlist.
PROXY_MODULE = "llamafleet_gateway.proxy"


def gateway_command(python: str, argv: Sequence[str]) -> list[str]:
    """The gateway's command with LiteLLM's arguments `argv`, run by `python` (the gateway
    environment's interpreter; the image's ENTRYPOINT is the same with its own)."""
    return [python, "-m", PROXY_MODULE, *argv]


@dataclass(frozen=True)
class Backend:
    """One team's model on one tier, as the gateway reaches it.

    Attributes:
        team: The team.
        model: The model's public name (what clients send as `model`).
        tier: The tier.
        base_url: The OpenAI base URL of its Service (`http://…:8080/v1`).
        capacity: Requests it serves at once at its maximum replicas (`replicas.max` x
            `parallel`); the plugin spills to the next tier past it.
        max_tokens: The model's cap on generated tokens per request.
        peer: The cluster whose gateway serves it, when not the gateway's own: `base_url` is
            then that gateway's (`https://<its hostname>/v1`).
        embeddings: It serves embeddings (llama-server --embeddings), not generation.
        wake_seconds: How long a request is held while the tier wakes from zero replicas (by
            this gateway, or for a peer's tier by the peer's, which this one waits for); 0 for
            a tier that always has one.
    """

    team: str
    model: str
    tier: str
    base_url: str
    capacity: int
    max_tokens: int
    peer: str | None = None
    embeddings: bool = False
    wake_seconds: int = 0

    @property
    def group(self) -> str:
        """Its LiteLLM model group."""
        return group_name(self.team, self.model, self.tier)


@dataclass(frozen=True)
class TeamLimits:
    """A team's limits per minute at the gateway (None: none), shared by its replicas."""

    requests_per_minute: int | None = None
    tokens_per_minute: int | None = None


def internal_key_env(team: str) -> str:
    """The gateway's environment variable that holds `team`'s internal key (LiteLLM reads a
    deployment's `api_key` from `os.environ/<NAME>`): LLAMAFLEET_KEY_<TEAM>, upper-cased, `-` as
    `_`."""
    return "LLAMAFLEET_KEY_" + re.sub(r"[^A-Z0-9]", "_", team.upper())


def peer_key_env(cluster: str) -> str:
    """The gateway's environment variable that holds the peer key of `cluster`'s gateway:
    LLAMAFLEET_PEER_KEY_<CLUSTER>, upper-cased, `-` as `_`."""
    return "LLAMAFLEET_PEER_KEY_" + re.sub(r"[^A-Z0-9]", "_", cluster.upper())


def _key_env(backend: Backend) -> str:
    return internal_key_env(backend.team) if backend.peer is None else peer_key_env(backend.peer)


def _call_seconds(backend: Backend, request_timeout_seconds: int) -> int:
    """How long a call to `backend` may take: the request timeout, plus, through a peer
    gateway, the time that gateway may hold the request while the tier wakes."""
    return request_timeout_seconds + (backend.wake_seconds if backend.peer else 0)


def longest_call_seconds(backends: Iterable[Backend], request_timeout_seconds: int) -> int:
    """The longest a request may last at the gateway: held while a tier wakes (here or at a
    peer), then served within the request timeout."""
    return request_timeout_seconds + max((b.wake_seconds for b in backends), default=0)


def routes(backends: Sequence[Backend], limits: Mapping[str, TeamLimits]) -> Routes:
    """The plugin's routing table: per team, per model, its tiers in the order of `backends`."""
    teams: dict[str, dict[str, list[Backend]]] = {}
    for backend in backends:
        teams.setdefault(backend.team, {}).setdefault(backend.model, []).append(backend)
    return Routes(
        {
            team: TeamRoute(
                models={
                    model: ModelRoute(
                        max_tokens=tiers[0].max_tokens,
                        embeddings=tiers[0].embeddings,
                        tiers=tuple(
                            TierRoute(b.tier, b.group, b.capacity, b.peer, b.wake_seconds)
                            for b in tiers
                        ),
                    )
                    for model, tiers in models.items()
                },
                requests_per_minute=limits.get(team, TeamLimits()).requests_per_minute,
                tokens_per_minute=limits.get(team, TeamLimits()).tokens_per_minute,
            )
            for team, models in teams.items()
        }
    )


def litellm_config(
    backends: Iterable[Backend],
    request_timeout_seconds: int,
    redis: tuple[str, int] | None = None,
) -> dict[str, Any]:
    """LiteLLM proxy's config (its YAML as data).

    Every deployment gets the fleet's request timeout and no retries of its own (a retry would
    run a generation twice); a model's tiers fall back in order when one is unreachable. Auth
    is the plugin's (`general_settings.custom_auth`); the master key comes from the
    LITELLM_MASTER_KEY environment variable and is never handed out. With `redis` (host, port),
    rate limits are shared through that Redis (`coordination_redis`, password from the
    REDIS_PASSWORD environment variable); without, each gateway process counts alone.
    """
    backends = list(backends)
    by_model: dict[tuple[str, str], list[str]] = {}
    for backend in backends:
        by_model.setdefault((backend.team, backend.model), []).append(backend.group)
    general: dict[str, Any] = {"custom_auth": f"{PLUGIN}.user_api_key_auth"}
    if redis is not None:
        general["coordination_redis"] = {
            "host": redis[0],
            "port": redis[1],
            "password": "os.environ/REDIS_PASSWORD",
        }
    return {
        "model_list": [
            {
                "model_name": backend.group,
                "litellm_params": {
                    # LiteLLM's OpenAI-compatible client; the name is the server's --alias,
                    # or for a peer gateway the group itself.
                    "model": f"openai/{backend.model if backend.peer is None else backend.group}",
                    "api_base": backend.base_url,
                    "api_key": f"os.environ/{_key_env(backend)}",
                    "timeout": _call_seconds(backend, request_timeout_seconds),
                    "stream_timeout": _call_seconds(backend, request_timeout_seconds),
                    "max_retries": 0,
                },
            }
            for backend in backends
        ],
        "router_settings": {
            "num_retries": 0,
            "timeout": longest_call_seconds(backends, request_timeout_seconds),
            "fallbacks": [
                {groups[i]: groups[i + 1 :]}
                for groups in by_model.values()
                for i in range(len(groups) - 1)
            ],
        },
        "litellm_settings": {
            "callbacks": f"{PLUGIN}.routing",
            "request_timeout": request_timeout_seconds,
            "telemetry": False,
            "drop_params": False,
        },
        "general_settings": general,
    }
