"""The fleet's alerts, generated from a stack's settings: a Prometheus rule file (`groups`) as plain
data, the same for the Prometheus Operator (a PrometheusRule's spec), a Prometheus of the
cluster's own (a rule file in a ConfigMap) and the native Prometheus of `make up`.

Each alert carries `severity`, a `summary`, a one-line `runbook` (what to look at first) and,
where `alerting.runbookUrl` is set, a `runbook_url` to its section of docs/runbooks.md. Every
alert is tested with `promtool test rules` (tests/monitoring): firing on a synthetic series and
silent on a healthy one.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Annotated, Any, Final

from pydantic import Field, StringConstraints

from llamafleet.components.alert_routing import Severity
from llamafleet.components.config import ComponentConfig
from llamafleet.components.labels import TIER_LABEL
from llamafleet.monitoring import metrics

# A Prometheus duration (https://prometheus.io/docs/prometheus/latest/configuration/
# configuration/#duration), limited to one unit: 30s, 5m, 2h.
Duration = Annotated[str, StringConstraints(pattern=r"^[1-9][0-9]{0,4}[smh]$")]
GROUP_NAME: Final = "llamafleet"
# Requests per second below which a model's error ratio pages no one (1 a minute).
MIN_ERROR_RATE: Final = 1 / 60
TIER_LABEL_METRIC: Final = metrics.label_metric_name(TIER_LABEL)


class AlertsConfig(ComponentConfig):
    """`llamafleet:alerting.alerts`: how long a condition lasts before its alert fires, and the
    error ratio that counts as failing. Short durations suit `local`; production keeps the
    defaults (a queue that grows for 5 minutes is not a blip)."""

    queue_growing_for: Duration = Field(
        default="5m",
        description="A model's queue (llamacpp:requests_deferred) non-empty and growing this "
        "long: LlamafleetQueueGrowing; also the window its growth is measured over.",
    )
    not_ready_for: Duration = Field(
        default="10m",
        description="A Deployment with fewer available pods than it wants this long "
        "(a model loads for minutes): LlamafleetPodsNotReady.",
    )
    pending_for: Duration = Field(
        default="10m",
        description="Pods of a tier Pending this long (no node fits them): "
        "LlamafleetTierPodsPending.",
    )
    errors_for: Duration = Field(
        default="5m",
        description="A model's error ratio at the gateway above errorRatio this long, also the "
        "rate window: LlamafleetModelErrors.",
    )
    error_ratio: float = Field(
        default=0.05,
        gt=0,
        lt=1,
        description="Share of a model's requests answered with an error that fires "
        "LlamafleetModelErrors (0.05: 5 %).",
    )
    spilling_for: Duration = Field(
        default="15m",
        description="Requests spilling past a model's first tier this long: "
        "LlamafleetModelSpilling (info: the next tier is doing its job, the first is small).",
    )
    fetch_failing_for: Duration = Field(
        default="2m",
        description="A pod's model fetcher failing (and still trying) this long: "
        "LlamafleetModelFetchFailing, by reason (store unreachable, digest mismatch, ...).",
    )


@dataclass(frozen=True)
class Deployed:
    """One llama-server Deployment the alerts watch: a team's model on a tier.

    Attributes:
        namespace: The team's namespace.
        name: The Deployment's and Service's name.
        team: The team.
        model: The model's name.
        tier: The tier's name.
        max_replicas: The autoscaler's maximum.
    """

    namespace: str
    name: str
    team: str
    model: str
    tier: str
    max_replicas: int


@dataclass(frozen=True)
class Alert:
    """One alerting rule: `name`, PromQL `expr`, how long it must hold (`for_`), its severity,
    a summary (may use `{{ $labels.x }}` templates) and a one-line runbook."""

    name: str
    expr: str
    for_: str
    severity: Severity
    summary: str
    runbook: str

    def rule(self, runbook_url: str | None) -> dict[str, Any]:
        """The rule as a Prometheus rule file holds it."""
        annotations = {"summary": self.summary, "runbook": self.runbook}
        if runbook_url is not None:
            annotations["runbook_url"] = f"{runbook_url.rstrip('/')}#{self.name.lower()}"
        return {
            "alert": self.name,
            "expr": self.expr,
            "for": self.for_,
            "labels": {"severity": self.severity},
            "annotations": annotations,
        }


def _regex(values: Iterable[str]) -> str:
    """An RE2 alternation matching exactly `values` (names here are DNS labels: no escaping)."""
    return "|".join(sorted(set(values)))


def _queue_growing(window: str, selector: str) -> str:
    """Per (namespace, service): the queue is non-empty and grew over `window`."""
    queue = f"{metrics.QUEUE}{{{selector}}}"
    return (
        f"sum by (namespace, service) ({queue}) > 0"
        f" and sum by (namespace, service) (deriv({queue}[{window}])) > 0"
    )


def _at_max(deployed: Deployed, window: str) -> Alert:
    where = f'namespace="{deployed.namespace}",deployment="{deployed.name}"'
    queue = f'{metrics.QUEUE}{{namespace="{deployed.namespace}",service="{deployed.name}"}}'
    # A pod whose queue never emptied over the window: a saturated queue that stays flat (a
    # fixed set of clients) counts, not only one that grows.
    waiting = f"sum by (namespace, service) (min_over_time({queue}[{window}])) > 0"
    return Alert(
        name="LlamafleetModelAtMaxReplicas",
        expr=(
            f"({metrics.DEPLOYMENT_SPEC_REPLICAS}{{{where}}} >= {deployed.max_replicas})"
            f" and on (namespace, deployment)"
            f' label_replace({waiting}, "deployment", "$1", "service", "(.*)")'
        ),
        for_=window,
        severity="warning",
        summary=(
            f"{deployed.team}'s {deployed.model} on {deployed.tier} is at its most replicas "
            f"({deployed.max_replicas}) and its queue has not emptied"
        ),
        runbook=(
            "Requests wait or spill to the next tier: raise models.<model>.replicas.max (within "
            "the team's quota and the tier's nodes) or add a tier to the model."
        ),
    )


def _fetch_failing(selector: str, for_: str) -> Alert:
    """A pod's model fetcher's latest attempt failed, and no attempt has succeeded since, for
    `for_` (the gauge stays 1 through the wait and a slow next attempt, so the alert never lapses
    between two failures; a fetch that succeeds exits, its series go stale, the alert resolves).
    """
    failed = f"{metrics.MODEL_FETCH_LAST_ATTEMPT_FAILED}{{{selector}}}"
    return Alert(
        name="LlamafleetModelFetchFailing",
        expr=f"max by (namespace, pod, reason) ({failed}) == 1",
        for_=for_,
        severity="critical",
        summary="{{ $labels.namespace }}/{{ $labels.pod }} cannot fetch its model: "
        "{{ $labels.reason }}",
        runbook="store_unreachable: the store's endpoint, DNS, the egress NetworkPolicy; "
        "digest_mismatch: re-sync the model or fix its pinned digest; not_found: sync the model "
        "or fix the digest; access_denied: the store credentials Secret or IRSA role; other: "
        "kubectl logs -n {{ $labels.namespace }} {{ $labels.pod }} -c model-fetcher.",
    )


def alerts(
    deployed: Sequence[Deployed], gateway_namespace: str, config: AlertsConfig
) -> list[Alert]:
    """The fleet's alerts for the Deployments in `deployed` (those of one cluster, or of every
    cluster a Prometheus watches) and the gateway in `gateway_namespace`.

    Queue, readiness, pending-pod and model-fetch alerts match only the teams' namespaces (and
    the gateway's), so other workloads of a shared cluster never page the fleet's operators.
    Errors and spills come from the gateway's metrics; pending pods from kube-state-metrics' pod
    labels, which need `--metric-labels-allowlist=pods=[llamafleet.io/tier]` (ClusterAddons
    sets it); failing model fetches from the fetchers' own metrics (their PodMonitor).
    """
    namespaces = _regex(d.namespace for d in deployed)
    ours = f'namespace=~"{namespaces}"'
    watched = f'namespace=~"{_regex([*(d.namespace for d in deployed), gateway_namespace])}"'
    fleet: list[Alert] = [
        Alert(
            name="LlamafleetQueueGrowing",
            expr=_queue_growing(config.queue_growing_for, ours),
            for_=config.queue_growing_for,
            severity="warning",
            summary="{{ $value }} requests wait at {{ $labels.namespace }}/{{ $labels.service "
            "}} and the queue keeps growing",
            runbook="Check the autoscaler (kubectl get scaledobject,hpa -n {{ $labels.namespace "
            "}}) and whether new pods are Pending or loading.",
        ),
        Alert(
            name="LlamafleetPodsNotReady",
            expr=(
                f"{metrics.DEPLOYMENT_SPEC_REPLICAS}{{{watched}}}"
                f" - {metrics.DEPLOYMENT_AVAILABLE}{{{watched}}} > 0"
            ),
            for_=config.not_ready_for,
            severity="warning",
            summary="{{ $labels.namespace }}/{{ $labels.deployment }} has {{ $value }} pod(s) "
            "fewer available than it wants",
            runbook="kubectl describe pods -n {{ $labels.namespace }}: a failing model fetch, "
            "a crash at load, or a probe that never passes.",
        ),
        Alert(
            name="LlamafleetTierPodsPending",
            expr=(
                # Unschedulable, not phase Pending: a pod fetching its model is Pending too.
                f"sum by (namespace, {TIER_LABEL_METRIC}) ("
                f"{metrics.POD_UNSCHEDULABLE}{{{ours}}}"
                f" * on (namespace, pod) group_left ({TIER_LABEL_METRIC})"
                f' {metrics.POD_LABELS}{{{ours},{TIER_LABEL_METRIC}!=""}}'
                f") > 0"
            ),
            for_=config.pending_for,
            severity="warning",
            summary="{{ $value }} pod(s) of tier {{ $labels." + TIER_LABEL_METRIC + " }} in "
            "{{ $labels.namespace }} wait for a node",
            runbook="The tier is full: check its nodes (kubectl get nodes -l "
            f"{TIER_LABEL}=<tier>), cluster-autoscaler's log on EKS, the team's quota.",
        ),
        Alert(
            name="LlamafleetModelErrors",
            expr=(
                f"sum by (team, model) (rate({metrics.GATEWAY_REQUESTS}"
                f'{{outcome="error"}}[{config.errors_for}]))'
                f" / sum by (team, model) (rate({metrics.GATEWAY_REQUESTS}"
                f"[{config.errors_for}])) > {config.error_ratio:g}"
                # A model with a request a minute or less pages on no single failure.
                f" and sum by (team, model) (rate({metrics.GATEWAY_REQUESTS}"
                f"[{config.errors_for}])) > {MIN_ERROR_RATE:g}"
            ),
            for_=config.errors_for,
            severity="critical",
            summary="{{ $value | humanizePercentage }} of {{ $labels.team }}'s requests to "
            "{{ $labels.model }} fail at the gateway",
            runbook="Look at the gateway's log and the model's pods: tiers that refuse "
            "connections or answer 5xx.",
        ),
        Alert(
            name="LlamafleetModelSpilling",
            expr=(
                f"sum by (team, model, tier) (rate({metrics.GATEWAY_SPILLS}"
                f"[{config.spilling_for}])) > 0"
            ),
            for_=config.spilling_for,
            severity="info",
            summary="{{ $labels.team }}'s {{ $labels.model }} spills to tier {{ $labels.tier }}: "
            "the tiers before it are full",
            runbook="Expected at peaks; if it lasts, the first tier needs more replicas.max or "
            "nodes.",
        ),
        _fetch_failing(ours, config.fetch_failing_for),
    ]
    return fleet + [_at_max(d, config.queue_growing_for) for d in deployed]


def rule_file(alerts_: Sequence[Alert], runbook_url: str | None) -> dict[str, Any]:
    """A Prometheus rule file (`promtool check rules` format) holding `alerts_` in one group:
    the spec of a PrometheusRule, or a file `rule_files` loads."""
    return {"groups": [{"name": GROUP_NAME, "rules": [a.rule(runbook_url) for a in alerts_]}]}
