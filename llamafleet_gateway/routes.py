"""The gateway's routing table: which team may call which model, and the tiers serving it.

The Pulumi program writes it (`Routes.to_json`) into the gateway's ConfigMap; the plugin reads it
at start (`Routes.from_json`). A route names LiteLLM deployment groups, one per team x model x
tier (`group_name`), so a team's request can only ever reach its own namespace's pods.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Set
from dataclasses import dataclass
from typing import Any

ROUTES_FORMAT = 1
# Who a peer key belongs to in the key table: another cluster's gateway, not a team (team names
# are Kubernetes names, which cannot start with "@").
PEER = "@peer"


class RoutesError(ValueError):
    """The routing table is malformed (one line: what and where)."""


def group_name(team: str, model: str, tier: str) -> str:
    """The LiteLLM model group of one team's model on one tier: `<team>/<model>/<tier>`."""
    return f"{team}/{model}/{tier}"


@dataclass(frozen=True)
class TierRoute:
    """One tier of a model, as the gateway sees it.

    Attributes:
        tier: The tier's name.
        group: Its LiteLLM model group (`group_name`).
        capacity: Requests the tier serves at once at its maximum replicas: `replicas.max` x
            `parallel` (llama-server's slots). Past it, requests wait in the servers' queues,
            so the next tier takes them.
        peer: The cluster whose gateway serves the tier (reached with that gateway's peer key,
            asking for the same group), or None for a tier of this gateway's own cluster.
        wake_seconds: How long a request waits for the tier to have a ready replica (it may be
            at zero: `replicas.min: 0`) before it goes on; 0: it always has one.
    """

    tier: str
    group: str
    capacity: int
    peer: str | None = None
    wake_seconds: int = 0


@dataclass(frozen=True)
class ModelRoute:
    """A model a team may call: its `max_tokens` cap, its tiers in order of preference, and
    whether it serves embeddings (then `/v1/embeddings` only) or generation (everything else)."""

    max_tokens: int
    tiers: tuple[TierRoute, ...]
    embeddings: bool = False


@dataclass(frozen=True)
class TeamRoute:
    """A team's models (public name -> route) and its limits per minute (None: unlimited),
    shared by every gateway replica."""

    models: Mapping[str, ModelRoute]
    requests_per_minute: int | None = None
    tokens_per_minute: int | None = None


@dataclass(frozen=True)
class Routes:
    """Every team's routes."""

    teams: Mapping[str, TeamRoute]

    def to_json(self) -> str:
        """The table as the gateway reads it (sorted keys, so equal tables are equal text)."""
        teams = {
            team: {
                "requestsPerMinute": route.requests_per_minute,
                "tokensPerMinute": route.tokens_per_minute,
                "models": {
                    name: {
                        "maxTokens": model.max_tokens,
                        "embeddings": model.embeddings,
                        "tiers": [
                            {"tier": t.tier, "group": t.group, "capacity": t.capacity}
                            | ({} if t.peer is None else {"peer": t.peer})
                            | ({"wakeSeconds": t.wake_seconds} if t.wake_seconds else {})
                            for t in model.tiers
                        ],
                    }
                    for name, model in route.models.items()
                },
            }
            for team, route in self.teams.items()
        }
        return json.dumps({"format": ROUTES_FORMAT, "teams": teams}, indent=2, sort_keys=True)

    def local_tier(self, group: str) -> tuple[ModelRoute, TierRoute] | None:
        """The route and tier of `group` where this gateway's own cluster serves it (what a
        peer gateway may ask for); None for an unknown group or one served by a peer."""
        for team in self.teams.values():
            for model in team.models.values():
                for tier in model.tiers:
                    if tier.group == group and tier.peer is None:
                        return model, tier
        return None

    def local_groups(self) -> list[str]:
        """Every group this gateway's own cluster serves, sorted."""
        return sorted(
            tier.group
            for team in self.teams.values()
            for model in team.models.values()
            for tier in model.tiers
            if tier.peer is None
        )

    @classmethod
    def from_json(cls, text: str) -> Routes:
        """Parse what `to_json` wrote.

        Raises:
            RoutesError: not JSON, another format version, or a field missing or mistyped.
        """
        try:
            document = json.loads(text)
            found = document.get("format")
            teams = {team: _team(v) for team, v in document["teams"].items()}
        except (KeyError, TypeError, AttributeError, ValueError) as exc:
            raise RoutesError(f"malformed routes: {type(exc).__name__}: {exc}") from None
        if found != ROUTES_FORMAT:
            raise RoutesError(f"routes format {found!r}, want {ROUTES_FORMAT}")
        return cls(teams)


def _team(value: Mapping[str, Any]) -> TeamRoute:
    models = {
        name: ModelRoute(
            max_tokens=int(model["maxTokens"]),
            tiers=tuple(
                TierRoute(
                    str(t["tier"]),
                    str(t["group"]),
                    int(t["capacity"]),
                    None if t.get("peer") is None else str(t["peer"]),
                    int(t.get("wakeSeconds", 0)),
                )
                for t in model["tiers"]
            ),
            embeddings=bool(model.get("embeddings", False)),
        )
        for name, model in value["models"].items()
    }
    if any(not model.tiers for model in models.values()):
        raise RoutesError("a model has no tier")
    rpm, tpm = value.get("requestsPerMinute"), value.get("tokensPerMinute")
    return TeamRoute(models, None if rpm is None else int(rpm), None if tpm is None else int(tpm))


def choose_tier(
    route: ModelRoute, in_flight: Mapping[str, int], failing: Set[str] = frozenset()
) -> tuple[TierRoute, bool]:
    """The tier a request goes to, and whether it spilled past the first.

    The first tier in order, not `failing` (groups that just failed to answer), whose requests
    in flight (`in_flight`, by group) are below its capacity; when every such tier is full, the
    first of them (the request waits in its queue, where the autoscaler sees it), so a tier
    spills only when it cannot take more; when every tier is failing, the first.
    """
    usable = [tier for tier in route.tiers if tier.group not in failing] or [route.tiers[0]]
    for tier in usable:
        if in_flight.get(tier.group, 0) < tier.capacity:
            return tier, tier is not route.tiers[0]
    return usable[0], usable[0] is not route.tiers[0]


def capped_max_tokens(requested: object, cap: int) -> int:
    """`max_tokens` for the backend: the request's, at most `cap`; `cap` when it gives none (or
    a non-positive or non-integer value, which the server would refuse anyway)."""
    if isinstance(requested, bool) or not isinstance(requested, int) or requested <= 0:
        return cap
    return min(requested, cap)
