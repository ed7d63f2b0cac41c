"""What LiteLLM's proxy config names: `custom_auth` (team keys) and `routing` (a callback).

Runs only in the gateway's own environment (LiteLLM pinned with hashes, `gateway/`). Configured by
environment, set by the Gateway component from the stack's settings:

- `LLAMAFLEET_GATEWAY_ROUTES`: the routing table (`routes.Routes` JSON, a ConfigMap file);
- `LLAMAFLEET_GATEWAY_KEYS`: the team key hashes (`keys.KeyTable`, a Secret file);
- `LLAMAFLEET_GATEWAY_METRICS_PORT`: where Prometheus metrics are served (default 9090), a port
  the Service does not expose;
- `LLAMAFLEET_GATEWAY_REDIS`: where the replicas share their requests in flight
  (`shared_counts`), if anywhere (names: `environment`).

A caller's key gives its team; the request's `model` must be one of that team's models (else
404), and is rewritten to the LiteLLM group of the team's deployment on the chosen tier, so no
key reaches another team's pods. A peer key (another cluster's gateway, `routes.PEER` in the
key table) asks for a group by name and reaches it only where this cluster serves it, so a
request crosses at most one more gateway. Only the OpenAI routes are served to a team key: LiteLLM's
admin routes and anything else answer 404. LiteLLM answers an HTTPException as OpenAI does:
`{"error": {"message", "type", "code"}}`.
"""

from __future__ import annotations

import asyncio
import os
import threading
from collections import Counter as Tally
from collections.abc import Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any, cast
from urllib.parse import urlsplit

from fastapi import HTTPException, Request
from litellm.exceptions import APIConnectionError, Timeout
from litellm.integrations.custom_logger import CustomLogger
from litellm.proxy._types import UserAPIKeyAuth
from prometheus_client import Counter, Gauge, start_http_server

from llamafleet_gateway import environment
from llamafleet_gateway.keys import KeyTable
from llamafleet_gateway.openai_routes import OPENAI_ROUTES
from llamafleet_gateway.routes import (
    PEER,
    ModelRoute,
    Routes,
    TierRoute,
    capped_max_tokens,
    choose_tier,
)
from llamafleet_gateway.shared_counts import from_environment
from llamafleet_gateway.watched import Watched

_ROUTES_FILE = Path(os.environ[environment.ROUTES])
# Read once now, so a gateway with a broken table never starts; then again whenever the
# ConfigMap changes (limits, capacities, caps): no restart for those.
_ROUTES = Watched(_ROUTES_FILE, Routes.from_json)
Routes.from_json(_ROUTES_FILE.read_text())
_KEYS = KeyTable(Path(os.environ[environment.KEYS]))


def routes() -> Routes:
    """The routing table as the ConfigMap holds it now (the last good one)."""
    table = _ROUTES.current()
    assert table is not None  # parsed at import
    return table


REQUESTS = Counter(
    "llamafleet_gateway_requests",
    "Requests routed, by team, model, tier and outcome (ok or error).",
    ["team", "model", "tier", "outcome"],
)
TOKENS = Counter(
    "llamafleet_gateway_tokens",
    "Tokens by team, model, tier and kind (prompt or completion), from the backend's usage.",
    ["team", "model", "tier", "kind"],
)
SPILLS = Counter(
    "llamafleet_gateway_spills",
    "Requests sent past a model's first tier because the tiers before were full.",
    ["team", "model", "tier"],
)
IN_FLIGHT = Gauge(
    "llamafleet_gateway_requests_in_flight",
    "Requests in flight per team, model and tier (waiting or being served): the demand the "
    "autoscalers scale on, present even when the tier has no pods.",
    ["team", "model", "tier"],
)
REJECTED = Counter(
    "llamafleet_gateway_rejected",
    "Requests refused before reaching a backend, by team and reason (unknown_model; "
    "wrong_endpoint: chat for an embeddings model or embeddings for a chat one; rate_limit: a "
    "team limit answered 429).",
    ["team", "reason"],
)


async def user_api_key_auth(request: Request, api_key: str | None) -> UserAPIKeyAuth:
    """LiteLLM's `general_settings.custom_auth`: the caller's team from its key.

    Raises:
        HTTPException: 404 for a route that is not an OpenAI route; 401 for a missing or
            unknown key.
    """
    if request.url.path.rstrip("/") not in OPENAI_ROUTES:
        raise HTTPException(status_code=404, detail="not found")
    # None when the request carries no Authorization header at all.
    key = (api_key or "").removeprefix("Bearer ").strip()
    team = _KEYS.team_of(key) if key else None
    table = routes()
    if team == PEER:
        # Another cluster's gateway: it asks for groups by name; its own limits held the team.
        return UserAPIKeyAuth(api_key="llamafleet-peer", team_id=PEER, models=table.local_groups())
    if team is None or team not in table.teams:
        raise HTTPException(status_code=401, detail="invalid API key")
    route = table.teams[team]
    # Its models' public names, and its own groups: LiteLLM lets a request fall back only to
    # groups the key may call (the listing shows the public names alone, filter below).
    groups = sorted(tier.group for model in route.models.values() for tier in model.tiers)
    return UserAPIKeyAuth(
        api_key=f"llamafleet-{team}",
        team_id=team,
        models=[*sorted(route.models), *groups],
        team_rpm_limit=route.requests_per_minute,
        team_tpm_limit=route.tokens_per_minute,
    )


# Every field by which a request may bound its length: OpenAI's two, and llama-server's own
# n_predict, which wins over max_tokens there (tools/server/server-common.cpp).
LENGTH_FIELDS = ("max_tokens", "max_completion_tokens", "n_predict")
EMBEDDING_CALLS = frozenset({"embeddings", "aembedding"})
# A tier whose /health answered 200 this recently is taken to be awake (KEDA scales a tier to
# zero only after minutes without demand).
AWAKE_FOR_SECONDS = 10.0
# A tier that failed to answer (unreachable, 5xx, a timeout) is passed over this long, so not
# every request pays for trying it first; then it is tried again.
FAILING_SECONDS = 30.0
# How often, at most, requests no event ended are looked for (on a request's way in).
SWEEP_SECONDS = 1.0
# The outcome of a request a team limit refused (429), and its REJECTED reason.
RATE_LIMITED = "rate_limit"
# Where the plugin keeps its own id of a request, in the request's metadata (never a client's
# id: LiteLLM takes litellm_call_id from a header the client sets).
CALL_KEY = "llamafleet_call"


def _metadata(data: Mapping[str, Any]) -> dict[str, Any]:
    for key in ("metadata", "litellm_metadata"):
        found = data.get(key)
        if isinstance(found, dict) and CALL_KEY in found:
            return cast(dict[str, Any], found)
    return {}


def _call_of(kwargs: Mapping[str, Any]) -> str | None:
    """The plugin's id of the request a log event is about (from its litellm_params)."""
    params = kwargs.get("litellm_params")
    found = _metadata(params if isinstance(params, dict) else {}).get(CALL_KEY)
    return str(found) if found else None


def _served(kwargs: Mapping[str, Any]) -> object:
    """The group that answered (or failed) in a log event: the router's model group."""
    params = kwargs.get("litellm_params")
    metadata = params.get("metadata") if isinstance(params, dict) else None
    found = metadata.get("model_group") if isinstance(metadata, dict) else None
    return found or kwargs.get("model_group")


def _labels_of(group: object) -> tuple[str, str, str] | None:
    """(team, model, tier) of a group name (routes.group_name); None for anything else."""
    parts = str(group).split("/") if group else []
    return (parts[0], parts[1], parts[2]) if len(parts) == 3 else None


def _peer_route(group: str) -> ModelRoute | None:
    """What a peer gateway asks for: exactly `group`, where this cluster serves it (never a
    group this gateway would forward again), as a one-tier route with the model's cap."""
    found = routes().local_tier(group)
    if found is None:
        return None
    model, tier = found
    return replace(model, tiers=(tier,))


def _is_rate_limit(error: object) -> bool:
    """A team limit's refusal (LiteLLM raises it with HTTP status 429)."""
    return getattr(error, "status_code", None) == 429


def _is_backend_fault(error: object) -> bool:
    """The backend could not answer: unreachable, a timeout, or a gateway status (502, 503,
    504). A 4xx or another 500 may be the request's own fault (too long an input, say): the
    backend is fine. The pinned LiteLLM reports a refused connection to an OpenAI-compatible
    backend as InternalServerError 500 "…OpenAIException - Connection error." (checked by
    tests/image/test_gateway.py: a stopped tier is passed over)."""
    if isinstance(error, APIConnectionError | Timeout) or "Connection error" in str(error):
        return True
    status = getattr(error, "status_code", None)
    return status in (408, 502, 503, 504) or status is None


def _route(team: str, model: str, call_type: object) -> ModelRoute:
    """The route of `team`'s `model` (for a peer, the group `model` where this cluster serves
    it), limited to the groups this process's router has.

    Raises:
        HTTPException: 404, 400 or 503, as async_pre_call_hook says.
    """
    if team == PEER:
        route = _peer_route(model)
    else:
        team_route = routes().teams.get(team)
        route = team_route.models.get(model) if team_route is not None else None
    if route is None:
        REJECTED.labels(team, "unknown_model").inc()
        raise HTTPException(
            status_code=404,
            detail=f"The model `{model}` does not exist or you do not have access to it.",
        )
    if (call_type in EMBEDDING_CALLS) != route.embeddings:
        REJECTED.labels(team, "wrong_endpoint").inc()
        raise HTTPException(
            status_code=400,
            detail=f"`{model}` serves embeddings only: POST /v1/embeddings"
            if route.embeddings
            else f"`{model}` does not serve embeddings",
        )
    known = _router_groups()
    if known is not None:
        # While a new table meets an old config (a rollout), only groups this process has.
        route = replace(route, tiers=tuple(t for t in route.tiers if t.group in known))
        if not route.tiers:
            raise HTTPException(status_code=503, detail=f"`{model}` is not served yet")
    return route


def _router() -> Any:
    """This process's LiteLLM router (built from its config at start); None before it exists."""
    from litellm.proxy import proxy_server  # noqa: PLC0415 (loaded after this module)

    return getattr(proxy_server, "llm_router", None)


def _address_of(group: str) -> tuple[str, int] | None:
    """(host, port) of `group`'s deployment (its api_base in LiteLLM's config)."""
    router = _router()
    deployments = router.get_model_list(model_name=group) if router is not None else None
    for deployment in deployments or []:
        url = urlsplit(str(deployment.get("litellm_params", {}).get("api_base", "")))
        if url.hostname:
            return url.hostname, url.port or (443 if url.scheme == "https" else 80)
    return None


async def _healthy(host: str, port: int) -> bool:
    """llama-server's /health at host:port answers 200 (it answers 503 while loading; a
    Service without ready pods refuses the connection). Plain HTTP: a tier of this cluster."""
    try:
        reader, writer = await asyncio.wait_for(asyncio.open_connection(host, port), 2)
    except (OSError, TimeoutError):
        return False
    try:
        writer.write(f"GET /health HTTP/1.0\r\nHost: {host}\r\n\r\n".encode())
        status = await asyncio.wait_for(reader.readline(), 2)
    except (OSError, TimeoutError):
        return False
    finally:
        writer.close()
    return status.split(b" ")[1:2] == [b"200"]


def _router_groups() -> set[str] | None:
    """The groups this process's LiteLLM router has (its config, read at start); None before
    the router exists."""
    router = _router()
    return None if router is None else set(router.get_model_names())


class Routing(CustomLogger):
    """Picks the tier of the caller's own deployment, caps the request's length, counts demand
    and outcomes per team, model and tier."""

    def __init__(self) -> None:
        super().__init__()
        self._lock = threading.Lock()
        self._in_flight: Tally[str] = Tally()
        # The other replicas' requests in flight, through Redis where there is one.
        self._shared = from_environment(self._own_counts)
        # call id -> (the group it was sent to, whether that was past the first tier, when
        # it was sent: event loop time)
        self._calls: dict[str, tuple[str, bool, float]] = {}
        # A request no event ends (a stream whose client left before its first chunk: LiteLLM
        # logs neither success nor failure) stops counting after this long.
        self._longest = float(os.environ.get(environment.LONGEST_CALL, "3600"))
        self._swept_at = float("-inf")
        # group -> when (event loop time) its /health last answered 200
        self._awake_at: dict[str, float] = {}
        # group -> until when (event loop time) it is passed over, having failed to answer
        self._failing: dict[str, float] = {}
        start_http_server(
            int(os.environ.get(environment.METRICS_PORT, "9090")),
            addr=os.environ.get(environment.METRICS_ADDR, "0.0.0.0"),  # noqa: S104
        )

    async def async_pre_call_hook(
        self, user_api_key_dict: UserAPIKeyAuth, cache: Any, data: dict[str, Any], call_type: Any
    ) -> dict[str, Any]:
        """Route the request to its team's deployment (data["model"] becomes its group), and
        where that tier may be at zero replicas, hold it while the tier wakes. A request
        `_route` refuses is answered with its HTTPException: 404 for a model not the caller's
        team's, 400 for the wrong endpoint (chat to an embeddings model, or the reverse), 503
        while this process does not serve the model yet.
        """
        route = _route(user_api_key_dict.team_id or "", str(data.get("model", "")), call_type)
        if not route.embeddings:
            for field in LENGTH_FIELDS:
                if field in data or field == "max_tokens":
                    data[field] = capped_max_tokens(data.get(field), route.max_tokens)
        if self._shared is not None:
            self._shared.start()
        call_id = os.urandom(16).hex()
        metadata = data.get("metadata")
        data["metadata"] = {**(metadata if isinstance(metadata, dict) else {}), CALL_KEY: call_id}
        now = asyncio.get_running_loop().time()
        if now - self._swept_at >= SWEEP_SECONDS:  # not a scan of every call per request
            self._swept_at = now
            self._forget_older_than(now - self._longest)
        with self._lock:
            counts = self._in_flight + (self._shared.others if self._shared else Tally())
            tier, spilled = choose_tier(route, counts, self._failing_now())
            self._in_flight[tier.group] += 1
            self._calls[call_id] = (tier.group, spilled, now)
        labels = _labels_of(tier.group)
        if labels is not None:
            IN_FLIGHT.labels(*labels).inc()
        if tier.wake_seconds and tier.peer is None:
            try:
                # Counted in flight meanwhile: the demand KEDA wakes the tier on.
                await self._awake(tier)
            except BaseException:  # cancelled (the client left) or anything else
                self._done(call_id, "error")
                raise
        data["model"] = tier.group
        return data

    def _forget_older_than(self, oldest: float) -> None:
        with self._lock:
            stale = [call for call, (_, _, sent) in self._calls.items() if sent < oldest]
        for call in stale:
            self._done(call, "error")

    def _own_counts(self) -> dict[str, int]:
        with self._lock:
            return dict(self._in_flight)

    def _failing_now(self) -> set[str]:
        now = asyncio.get_running_loop().time()
        return {group for group, until in self._failing.items() if until > now}

    async def _awake(self, tier: TierRoute) -> None:
        """Wait until `tier` has a ready replica (llama-server's /health answers 200 through
        its Service), for at most its wake_seconds; past that the request goes on, to fail over
        to the next tier. A tier seen awake in the last AWAKE_FOR_SECONDS is not probed again."""
        loop = asyncio.get_running_loop()
        seen = self._awake_at.get(tier.group)
        if seen is not None and loop.time() - seen < AWAKE_FOR_SECONDS:
            return
        address = _address_of(tier.group)
        if address is None:
            return
        deadline = loop.time() + tier.wake_seconds
        while not await _healthy(*address):
            if loop.time() >= deadline:
                return
            await asyncio.sleep(1)
        self._awake_at[tier.group] = loop.time()

    async def async_filter_listed_models(
        self, user_api_key_dict: UserAPIKeyAuth, model_names: Sequence[str]
    ) -> Sequence[str]:
        """`/v1/models` lists the caller's models by their public names, not the groups."""
        table = routes()
        if user_api_key_dict.team_id == PEER:
            local = set(table.local_groups())
            return [name for name in model_names if name in local]
        team = table.teams.get(user_api_key_dict.team_id or "")
        return [name for name in model_names if team is not None and name in team.models]

    def _done(
        self, call_id: str | None, outcome: str, served: object = None, usage: Any = None
    ) -> None:
        """The request `call_id` no longer counts as demand (the first event about it). A
        request a team limit refused (`outcome` RATE_LIMITED) never reached a backend: it is
        counted as rejected, not as a request or a spill. Otherwise the outcome is counted for
        the group that answered (`served`; a fallback's own group) or, without one, the group
        it was sent to, and a request sent past the first tier as a spill."""
        with self._lock:
            found = self._calls.pop(call_id, None) if call_id else None
            group, spilled, _ = found or ("", False, 0.0)
            if group:
                self._in_flight[group] -= 1
        sent = _labels_of(group)
        if sent is not None:
            IN_FLIGHT.labels(*sent).dec()
        if outcome == RATE_LIMITED:
            if sent is not None:
                REJECTED.labels(sent[0], RATE_LIMITED).inc()
            return
        if spilled and sent is not None:
            SPILLS.labels(*sent).inc()
        labels = _labels_of(served) or sent
        if labels is None:
            return
        REQUESTS.labels(*labels, outcome).inc()
        for kind in ("prompt", "completion") if usage is not None else ():
            count = getattr(usage, f"{kind}_tokens", None)
            if isinstance(count, int):
                TOKENS.labels(*labels, kind).inc(count)

    async def async_log_success_event(
        self, kwargs: dict[str, Any], response_obj: Any, start_time: Any, end_time: Any
    ) -> None:
        """A request (a whole stream, for streaming) finished: it no longer counts as demand,
        and the group that answered is not failing."""
        usage = getattr(response_obj, "usage", None)
        served = _served(kwargs)
        self._failing.pop(str(served), None)
        self._done(_call_of(kwargs), "ok", served, usage)

    async def async_log_failure_event(
        self, kwargs: dict[str, Any], response_obj: Any, start_time: Any, end_time: Any
    ) -> None:
        """An attempt failed at a backend (a fallback may follow), or a team limit refused the
        request (LiteLLM logs that as a failure too). A backend that could not answer
        (unreachable, 5xx, a timeout) is passed over for FAILING_SECONDS."""
        error = kwargs.get("exception") or response_obj
        limited = _is_rate_limit(error)
        served = _served(kwargs)
        if not limited and _is_backend_fault(error) and served:
            self._failing[str(served)] = asyncio.get_running_loop().time() + FAILING_SECONDS
        self._done(_call_of(kwargs), RATE_LIMITED if limited else "error", served)

    async def async_post_call_failure_hook(
        self,
        request_data: dict[str, Any],
        original_exception: Exception,
        user_api_key_dict: UserAPIKeyAuth,
        traceback_str: str | None = None,
    ) -> None:
        """A request failed anywhere after routing: a team limit (429), a timeout."""
        outcome = RATE_LIMITED if _is_rate_limit(original_exception) else "error"
        self._done(_metadata(request_data).get(CALL_KEY), outcome)


routing = Routing()
