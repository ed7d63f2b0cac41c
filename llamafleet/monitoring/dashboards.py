"""The fleet's Grafana dashboards, generated (grafana-foundation-sdk), one JSON model each:

- fleet overview: tokens per second, the queue, busy slots, time to first token and per output
  token, and replicas, by model and tier (llama-server, the gateway, kube-state-metrics);
- team usage: requests, tokens, errors, 429s and spills per team (the gateway);
- tier capacity: pods per tier and phase, CPU, memory and GPUs requested against what the
  tier's nodes can allocate, and how busy those nodes are (kube-state-metrics, node_exporter).

Variables: `datasource`, and `team`, `model`, `tier` (multi-value, All by default). Every metric
name comes from llamafleet.monitoring.metrics; tests check each panel's PromQL with the pinned
promtool and each name against what the pinned binaries export.
"""

from __future__ import annotations

from typing import Any, Final

from llamafleet.monitoring import metrics
from llamafleet.monitoring.grafana import (
    Section,
    Target,
    Timeseries,
    Variable,
    dashboard,
    datasource_variable,
    query_variable,
    stat,
    timeseries,
)
from llamafleet.monitoring.queries import (
    MODEL,
    RATE,
    TEAM,
    TIER,
    TIER_KSM,
    FleetQueries,
    label_values,
    live_pods,
    on_tier_nodes,
    tier_node_labels,
    tier_nodes,
    tier_pods,
    var,
)

FLEET: Final = "llamafleet-fleet-overview"
TEAMS: Final = "llamafleet-team-usage"
TIERS: Final = "llamafleet-tier-capacity"
BY_MODEL_TIER: Final = f"{MODEL}, {TIER}"
MODEL_ON_TIER: Final = "{{model}} on {{tier}}"
TIER_LEGEND: Final = "{{" + TIER_KSM + "}}"


def _gateway_variables(queries: FleetQueries) -> list[Variable]:
    """datasource, then team, model and tier as the gateway's requests carry them, each list
    narrowed by the ones before."""
    requests = metrics.GATEWAY_REQUESTS
    return [
        datasource_variable(),
        query_variable(TEAM, "Team", label_values(requests, TEAM)),
        query_variable(
            MODEL, "Model", label_values(f"{requests}{{{queries.team_selector}}}", MODEL)
        ),
        query_variable(
            TIER,
            "Tier",
            label_values(f'{requests}{{{queries.team_selector},{MODEL}=~"{var(MODEL)}"}}', TIER),
        ),
    ]


def fleet_overview(queries: FleetQueries) -> dict[str, Any]:
    """The fleet at a glance, by model and tier (see the module)."""
    by = BY_MODEL_TIER
    throughput = Section(
        "Throughput",
        [
            timeseries(
                "Generated tokens/s",
                "llama-server's generated tokens per second (llamacpp:tokens_predicted_total).",
                "short",
                [Target(queries.server(metrics.TOKENS_PREDICTED, by, rate=True), MODEL_ON_TIER)],
                width=12,
            ),
            timeseries(
                "Prompt tokens/s",
                "Prompt tokens llama-server processed per second, cached ones excluded.",
                "short",
                [Target(queries.server(metrics.PROMPT_TOKENS, by, rate=True), MODEL_ON_TIER)],
                width=12,
            ),
        ],
    )
    load = Section(
        "Load",
        [
            timeseries(
                "Queue: requests waiting for a slot",
                "llamacpp:requests_deferred, what KEDA scales the Deployments on.",
                "short",
                [Target(queries.server(metrics.QUEUE, by), MODEL_ON_TIER)],
            ),
            timeseries(
                "Busy slots",
                "llamacpp:requests_processing: requests being served (at most the slots, "
                "parallel x replicas).",
                "short",
                [Target(queries.server(metrics.PROCESSING, by), MODEL_ON_TIER)],
            ),
            timeseries(
                "Demand at the gateway",
                "Requests in flight at the gateway (waiting or served), also for tiers at zero "
                "replicas: what KEDA wakes a tier on.",
                "short",
                [
                    Target(
                        f"sum by ({by}) ({metrics.DEMAND}{{{queries.gateway_selector}}})",
                        MODEL_ON_TIER,
                    )
                ],
            ),
        ],
    )
    latency = Section(
        "Latency",
        [
            timeseries(
                "Time to first token (prompt processing per request)",
                "llama-server exports no time-to-first-token histogram: this is its prompt "
                "processing time (llamacpp:prompt_seconds_total) per request the gateway "
                "answered, a mean that leaves out the time waiting in the queue (see Queue).",
                "s",
                [Target(queries.per_request(metrics.PROMPT_SECONDS), "{{team}} " + MODEL_ON_TIER)],
                width=12,
            ),
            timeseries(
                "Time per output token",
                "Generation time per generated token (llamacpp:tokens_predicted_seconds_total / "
                "llamacpp:tokens_predicted_total): the mean gap between streamed tokens.",
                "s",
                [
                    Target(
                        queries.per_token(metrics.PREDICTED_SECONDS, metrics.TOKENS_PREDICTED),
                        MODEL_ON_TIER,
                    )
                ],
                width=12,
            ),
        ],
    )
    replicas = Section(
        "Replicas",
        [
            timeseries(
                "Replicas by model and tier",
                "Available llama-server pods, and the replicas their autoscaler asks for.",
                "short",
                [
                    Target(
                        queries.deployments(metrics.DEPLOYMENT_AVAILABLE, by),
                        MODEL_ON_TIER + " available",
                    ),
                    Target(
                        queries.deployments(metrics.DEPLOYMENT_SPEC_REPLICAS, by),
                        MODEL_ON_TIER + " wanted",
                    ),
                ],
                width=24,
            )
        ],
    )
    return dashboard(
        FLEET,
        "llamafleet / Fleet overview",
        "Throughput, queue, busy slots, latency and replicas of every model on every tier.",
        _gateway_variables(queries),
        [throughput, load, latency, replicas],
    )


def team_usage(queries: FleetQueries) -> dict[str, Any]:
    """What each team sends through the gateway (see the module)."""
    requests, tokens = metrics.GATEWAY_REQUESTS, metrics.GATEWAY_TOKENS
    team_model = f"{TEAM}, {MODEL}"
    failed = queries.gateway(requests, team_model, matchers='outcome="error"')
    traffic = Section(
        "Requests",
        [
            timeseries(
                "Requests/s by team and outcome",
                "Requests the gateway routed (ok or error).",
                "reqps",
                [Target(queries.gateway(requests, f"{TEAM}, outcome"), "{{team}} {{outcome}}")],
            ),
            timeseries(
                "Requests/s by team, model and tier",
                "Where each team's requests were served.",
                "reqps",
                [
                    Target(
                        queries.gateway(requests, f"{team_model}, {TIER}"),
                        "{{team}} " + MODEL_ON_TIER,
                    )
                ],
            ),
            timeseries(
                "Error ratio by team and model",
                "Share of requests answered with an error (LlamafleetModelErrors fires above "
                "alerting.alerts.errorRatio).",
                "percentunit",
                [
                    Target(
                        f"{failed} / {queries.gateway(requests, team_model)}", "{{team}} {{model}}"
                    )
                ],
            ),
        ],
    )
    usage = Section(
        "Tokens",
        [
            timeseries(
                "Tokens/s by team and kind",
                "Prompt and completion tokens, from the backends' usage.",
                "short",
                [Target(queries.gateway(tokens, f"{TEAM}, kind"), "{{team}} {{kind}}")],
            ),
            stat(
                "Tokens in the time range",
                "Tokens per team, model and kind over the dashboard's time range.",
                "short",
                [
                    Target(
                        queries.gateway_increase(tokens, f"{team_model}, kind"),
                        "{{team}} {{model}} {{kind}}",
                    )
                ],
            ),
            stat(
                "Requests in the time range",
                "Requests per team and model over the dashboard's time range.",
                "short",
                [Target(queries.gateway_increase(requests, team_model), "{{team}} {{model}}")],
            ),
        ],
    )
    rejected = metrics.GATEWAY_REJECTED
    limits = Section(
        "Limits and spills",
        [
            timeseries(
                "429s/s by team (rate limit)",
                "Requests refused by a team's limit at the gateway: never a request or a spill.",
                "reqps",
                [
                    Target(
                        f"sum by ({TEAM}) (rate({rejected}"
                        f'{{{queries.team_selector},reason="rate_limit"}}[{RATE}]))',
                        "{{team}}",
                    )
                ],
            ),
            timeseries(
                "Rejections/s by team and reason",
                "Requests refused before a backend: rate_limit, unknown_model, wrong_endpoint.",
                "reqps",
                [
                    Target(
                        f"sum by ({TEAM}, reason) (rate({rejected}"
                        f"{{{queries.team_selector}}}[{RATE}]))",
                        "{{team}} {{reason}}",
                    )
                ],
            ),
            timeseries(
                "Spills/s by team, model and tier",
                "Requests sent past a model's first tier because the tiers before were full; "
                "the tier is where they went.",
                "reqps",
                [
                    Target(
                        queries.gateway(metrics.GATEWAY_SPILLS, f"{team_model}, {TIER}"),
                        "{{team}} " + MODEL_ON_TIER,
                    )
                ],
            ),
        ],
    )
    return dashboard(
        TEAMS,
        "llamafleet / Team usage",
        "Requests, tokens, errors, rate-limit refusals and spills of each team at the gateway.",
        _gateway_variables(queries),
        [traffic, usage, limits],
    )


def _requested_and_allocatable(resource: str, title: str, unit: str) -> Timeseries:
    """A panel: what the live pods of each tier request of `resource` (kube-state-metrics'
    name: cpu, memory, nvidia_com_gpu) against what its nodes can allocate."""
    requested = live_pods(tier_pods(metrics.POD_REQUESTS, f'resource="{resource}"'))
    allocatable = tier_nodes(metrics.NODE_ALLOCATABLE, f'resource="{resource}"')
    return timeseries(
        title,
        f"{resource} requested by the Pending and Running pods of each tier, and allocatable "
        "on its nodes.",
        unit,
        [
            Target(f"sum by ({TIER_KSM}) ({requested})", TIER_LEGEND + " requested"),
            Target(f"sum by ({TIER_KSM}) ({allocatable})", TIER_LEGEND + " allocatable"),
        ],
    )


def tier_capacity() -> dict[str, Any]:
    """Each tier's pods and nodes (see the module); tiers are the nodes' llamafleet.io/tier."""
    pods = Section(
        "Pods",
        [
            timeseries(
                "Pods by tier and phase",
                "Pods labelled with each tier, by phase: Pending ones wait for a node "
                "(LlamafleetTierPodsPending).",
                "short",
                [
                    Target(
                        f"sum by ({TIER_KSM}, phase) ({tier_pods(metrics.POD_PHASE)}) > 0",
                        TIER_LEGEND + " {{phase}}",
                    )
                ],
                width=12,
            ),
            timeseries(
                "Nodes by tier",
                "Nodes carrying each tier's label.",
                "short",
                [Target(f"count by ({TIER_KSM}) ({tier_node_labels()})", TIER_LEGEND)],
                width=12,
            ),
        ],
    )
    requests = Section(
        "Requested and allocatable",
        [
            _requested_and_allocatable("cpu", "CPU cores", "short"),
            _requested_and_allocatable("memory", "Memory", "bytes"),
            _requested_and_allocatable(metrics.sanitized("nvidia.com/gpu"), "GPUs", "short"),
        ],
    )
    idle = f'rate({metrics.NODE_CPU_SECONDS}{{mode="idle"}}[{RATE}])'
    available = f"sum by ({TIER_KSM}) ({on_tier_nodes(metrics.NODE_MEMORY_AVAILABLE)})"
    total = f"sum by ({TIER_KSM}) ({on_tier_nodes(metrics.NODE_MEMORY_TOTAL)})"
    usage = Section(
        "Node usage",
        [
            timeseries(
                "CPU busy by tier",
                "Share of the tier's node CPUs not idle (node_exporter).",
                "percentunit",
                [Target(f"avg by ({TIER_KSM}) ({on_tier_nodes(f'1 - {idle}')})", TIER_LEGEND)],
                width=12,
            ),
            timeseries(
                "Memory used by tier",
                "Share of the tier's node memory not available (node_exporter).",
                "percentunit",
                [Target(f"1 - {available} / {total}", TIER_LEGEND)],
                width=12,
            ),
        ],
    )
    return dashboard(
        TIERS,
        "llamafleet / Tier capacity",
        "Pods, requested resources against allocatable, and node usage of each tier.",
        [
            datasource_variable(),
            query_variable(TIER, "Tier", label_values(metrics.NODE_LABELS, TIER_KSM)),
        ],
        [pods, requests, usage],
    )


def fleet_dashboards(queries: FleetQueries) -> dict[str, dict[str, Any]]:
    """Every dashboard of the fleet by uid (also its ConfigMap's and file's name): fleet
    overview, team usage, tier capacity."""
    return {
        FLEET: fleet_overview(queries),
        TEAMS: team_usage(queries),
        TIERS: tier_capacity(),
    }
