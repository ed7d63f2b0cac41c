"""`llamafleet status`: one stack's serving state per team, model and tier, gathered from two
sources and kept apart from how it is shown (`status_screen`) and where the sources are
(`status_command`).

- The Kubernetes API server: the llama-server Deployments (`DEPLOYMENT_SELECTOR`) in the teams'
  namespaces (`llamafleet-<team>`), their desired (`spec.replicas`) and ready
  (`status.readyReplicas`) replicas, their model and tier labels (`pod_labels`) and the digest
  the pod template's model-fetcher init container fetches (`modelsync fetch --digest`).
- Prometheus' HTTP API: per Service (`namespace`, `service` target labels), the queue
  (`llamacpp:requests_deferred` summed), busy slots (`llamacpp:requests_processing` summed) and
  tokens/s (`rate(llamacpp:tokens_predicted_total[5m])` summed); per team, model and tier, the
  requests/s the gateway spilled there (`rate(llamafleet_gateway_spills_total[5m])`); and the
  firing alerts named `Llamafleet…` (`/api/v1/alerts`).

Every function here but `read_metrics` and `gather`, which ask the sources, is pure: each reads
the sources' JSON answers as they come, so each is tested with canned answers. A source that
cannot answer is a `SourceError` (one line); `gather` records it as a `SourceProblem` and keeps
what the other source gave.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Final, Protocol, cast

from llamafleet.components.alert_routing import ALERT_MATCHER, SEVERITIES
from llamafleet.components.labels import MODEL_LABEL, TIER_LABEL
from llamafleet.monitoring import metrics
from llamafleet.settings.names import NAMESPACE_PREFIX, instance_name, team_namespace

SOURCE_API_SERVER: Final = "API server"
SOURCE_PROMETHEUS: Final = "Prometheus"
# The window of every rate (tokens/s, spills/s).
# llama-server counts a request's tokens when it ends (server-context.cpp, metrics_on_prediction):
# a window of several long requests, so a generation in progress does not read as 0.
RATE_WINDOW: Final = "5m"
# `modelsync fetch`'s option naming the model's digest (the model-fetcher init container's
# command, `llamafleet.components.inference_pod`).
FETCH_DIGEST_OPTION: Final = "--digest"
# Only the teams' namespaces: other workloads of a shared cluster stay out.
TEAM_NAMESPACES: Final = f'namespace=~"{NAMESPACE_PREFIX}.+"'


class SourceError(Exception):
    """A source (the API server, Prometheus) could not answer: why, in one line."""


class PrometheusApi(Protocol):
    """Prometheus' HTTP API, however it is reached (directly, or through the API server's
    service proxy)."""

    def get(self, path: str, params: Mapping[str, str]) -> Any:
        """The `data` of a successful answer at `path` (e.g. `/api/v1/query`) with `params`.

        Raises:
            SourceError: no answer, an HTTP error, or an answer that is not a success.
        """
        ...


# Lists the llama-server Deployments as the API server returns them (`items` of a
# DeploymentList); raises SourceError.
DeploymentLister = Callable[[], Sequence[Mapping[str, Any]]]


@dataclass(frozen=True)
class SourceProblem:
    """A source that did not answer (`source`: SOURCE_API_SERVER or SOURCE_PROMETHEUS) and why."""

    source: str
    reason: str

    def line(self, stack: str) -> str:
        """The one line printed on stderr: `status <stack>: <source>: <why>`."""
        return f"status {stack}: {self.source}: {self.reason}"


@dataclass(frozen=True)
class ModelDeployment:
    """One llama-server Deployment as the API server holds it.

    Attributes:
        namespace: The team's namespace (`llamafleet-<team>`).
        name: The Deployment's (and its Service's) name, `<model>-<tier>`.
        team: The team (the namespace without its prefix).
        model: Its `llamafleet.io/model` label; None where it has none.
        tier: Its `llamafleet.io/tier` label; None where it has none.
        desired_replicas: `spec.replicas` (the autoscaler's choice; 1 where unset).
        ready_replicas: `status.readyReplicas` (0 where unset).
        digest: The `sha256:<hex>` its pods fetch; None where no init container names one.
    """

    namespace: str
    name: str
    team: str
    model: str | None
    tier: str | None
    desired_replicas: int
    ready_replicas: int
    digest: str | None


@dataclass(frozen=True)
class ServerMetrics:
    """What Prometheus holds for the llama-servers behind one Service, summed over its pods;
    None: no series (not scraped).

    Attributes:
        queue: Requests waiting for a slot (`llamacpp:requests_deferred`).
        busy_slots: Requests being processed (`llamacpp:requests_processing`), at most
            the slots.
        tokens_per_second: Tokens generated per second over RATE_WINDOW.
    """

    queue: float | None = None
    busy_slots: float | None = None
    tokens_per_second: float | None = None


@dataclass(frozen=True)
class FiringAlert:
    """A firing llamafleet alert (`alertname` matching `Llamafleet.*`).

    Attributes:
        name: The alertname.
        severity: Its `severity` label (critical, warning, info; "" where absent).
        labels: Its other labels (namespace, service, team, model, tier … as its rule gives).
        summary: Its `summary` annotation ("" where absent).
        active_at: When it became active (RFC 3339, as Prometheus gives it; "" where absent).
    """

    name: str
    severity: str
    labels: Mapping[str, str]
    summary: str
    active_at: str


@dataclass(frozen=True)
class FleetMetrics:
    """Everything read from Prometheus for one status.

    Attributes:
        servers: (namespace, service) -> that Service's ServerMetrics.
        spills: (team, model, tier) -> requests per second the gateway sent to that tier past
            the model's first (over RATE_WINDOW); absent: none counted.
        groups: The (team, model, tier) groups the gateway routes (its demand series), for
            rows when the API server cannot list the Deployments.
        alerts: The firing llamafleet alerts, most severe first.
    """

    servers: Mapping[tuple[str, str], ServerMetrics] = field(
        default_factory=dict[tuple[str, str], ServerMetrics]
    )
    spills: Mapping[tuple[str, str, str], float] = field(
        default_factory=dict[tuple[str, str, str], float]
    )
    groups: frozenset[tuple[str, str, str]] = frozenset()
    alerts: tuple[FiringAlert, ...] = ()


@dataclass(frozen=True)
class ModelStatus:
    """One row: a team's model on a tier. Replicas and digest are None where the API server did
    not answer; the metrics are None where Prometheus did not (or holds no series for it).

    Attributes:
        team: The team.
        model: The model (None: known only by its Service, `deployment`).
        tier: The tier (None: known only by its Service).
        namespace: The team's namespace.
        deployment: The Deployment's and Service's name.
        desired_replicas: The replicas the Deployment wants.
        ready_replicas: Its ready replicas.
        digest: The model digest its pods fetch (`sha256:<hex>`).
        queue: Requests waiting for a slot, over its pods.
        busy_slots: Slots processing a request, over its pods.
        tokens_per_second: Tokens generated per second, over its pods.
        spills_per_second: Requests per second the gateway sent here past the model's first
            tier (0: none counted).
    """

    team: str
    model: str | None
    tier: str | None
    namespace: str
    deployment: str
    desired_replicas: int | None = None
    ready_replicas: int | None = None
    digest: str | None = None
    queue: float | None = None
    busy_slots: float | None = None
    tokens_per_second: float | None = None
    spills_per_second: float | None = None


@dataclass(frozen=True)
class StackStatus:
    """One stack's status on one cluster.

    Attributes:
        stack: The stack.
        cluster: The cluster (a `llamafleet:clusters` key) it was read from.
        models: One ModelStatus per Deployment (or, without the API server, per group the
            metrics name), by team, model, tier.
        alerts: The firing llamafleet alerts; None where Prometheus did not answer.
        problems: The sources that did not answer, at most one each.
    """

    stack: str
    cluster: str
    models: tuple[ModelStatus, ...]
    alerts: tuple[FiringAlert, ...] | None
    problems: tuple[SourceProblem, ...] = ()

    def problem(self, source: str) -> SourceProblem | None:
        """The problem of `source` (SOURCE_API_SERVER, SOURCE_PROMETHEUS); None if it answered."""
        return next((p for p in self.problems if p.source == source), None)


def fetched_digest(pod_spec: Mapping[str, Any]) -> str | None:
    """The digest a pod template's init containers fetch: the value after FETCH_DIGEST_OPTION
    in the first init container whose argv (command, then args) has one; None if none does."""
    for container in pod_spec.get("initContainers") or []:
        argv = [str(a) for a in [*(container.get("command") or []), *(container.get("args") or [])]]
        if FETCH_DIGEST_OPTION in argv[:-1]:
            return argv[argv.index(FETCH_DIGEST_OPTION) + 1]
    return None


def model_deployment(item: Mapping[str, Any]) -> ModelDeployment | None:
    """A Deployment (as the API server returns it) as a ModelDeployment; None where it is not
    in a team's namespace."""
    meta: Mapping[str, Any] = item["metadata"]
    namespace = str(meta["namespace"])
    if not namespace.startswith(NAMESPACE_PREFIX):
        return None
    labels: Mapping[str, Any] = meta.get("labels") or {}
    spec: Mapping[str, Any] = item.get("spec") or {}
    status: Mapping[str, Any] = item.get("status") or {}
    replicas = spec.get("replicas")
    model, tier = labels.get(MODEL_LABEL), labels.get(TIER_LABEL)
    return ModelDeployment(
        namespace=namespace,
        name=str(meta["name"]),
        team=namespace.removeprefix(NAMESPACE_PREFIX),
        model=None if model is None else str(model),
        tier=None if tier is None else str(tier),
        desired_replicas=1 if replicas is None else int(replicas),
        ready_replicas=int(status.get("readyReplicas") or 0),
        digest=fetched_digest(spec.get("template", {}).get("spec") or {}),
    )


def model_deployments(items: Iterable[Mapping[str, Any]]) -> list[ModelDeployment]:
    """The llama-server Deployments among `items` (a DeploymentList's) in teams' namespaces.

    Raises:
        SourceError: an item that is not a Deployment as the API server returns it.
    """
    try:
        found = [model_deployment(item) for item in items]
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise SourceError(f"a Deployment the API server returned is malformed: {exc!r}") from None
    return [d for d in found if d is not None]


def server_query(metric: str, *, rate: bool = False) -> str:
    """PromQL: `metric` (or its rate over RATE_WINDOW) in the teams' namespaces, summed by
    (namespace, service): one value per model Service."""
    series = f"{metric}{{{TEAM_NAMESPACES}}}"
    if rate:
        series = f"rate({series}[{RATE_WINDOW}])"
    return f"sum by (namespace, service) ({series})"


QUEUE_QUERY: Final = server_query(metrics.QUEUE)
BUSY_QUERY: Final = server_query(metrics.PROCESSING)
TOKENS_QUERY: Final = server_query(metrics.TOKENS_PREDICTED, rate=True)
SPILLS_QUERY: Final = f"sum by (team, model, tier) (rate({metrics.GATEWAY_SPILLS}[{RATE_WINDOW}]))"
GROUPS_QUERY: Final = f"count by (team, model, tier) ({metrics.DEMAND})"


def vector(data: Any) -> list[tuple[dict[str, str], float | None]]:
    """An instant query's `data` (resultType vector) as (labels, value) pairs; NaN -> None.

    Raises:
        SourceError: `data` is not an instant vector.
    """
    try:
        if data["resultType"] != "vector":
            raise SourceError(f"expected an instant vector, got a {data['resultType']}")
        samples: list[tuple[dict[str, str], float | None]] = []
        for sample in data["result"]:
            value = float(sample["value"][1])
            labels = {str(k): str(v) for k, v in dict(sample["metric"]).items()}
            samples.append((labels, None if math.isnan(value) else value))
    except (KeyError, TypeError, ValueError, IndexError) as exc:
        raise SourceError(f"not a query answer: {exc!r}") from None
    return samples


def by_labels(
    samples: Iterable[tuple[Mapping[str, str], float | None]], *names: str
) -> dict[tuple[str, ...], float | None]:
    """Samples keyed by the values of the labels `names` (those lacking one are left out)."""
    return {
        tuple(labels[n] for n in names): value
        for labels, value in samples
        if all(n in labels for n in names)
    }


def server_metrics(
    queue: Mapping[tuple[str, ...], float | None],
    busy: Mapping[tuple[str, ...], float | None],
    tokens: Mapping[tuple[str, ...], float | None],
) -> dict[tuple[str, str], ServerMetrics]:
    """(namespace, service) -> ServerMetrics, from the three queries' samples by_labels
    (namespace, service)."""
    keys = cast(set[tuple[str, str]], set(queue) | set(busy) | set(tokens))
    return {
        key: ServerMetrics(
            queue=queue.get(key), busy_slots=busy.get(key), tokens_per_second=tokens.get(key)
        )
        for key in keys
    }


def firing_alerts(data: Any) -> tuple[FiringAlert, ...]:
    """The firing llamafleet alerts of `/api/v1/alerts`' `data`, most severe first, then by
    name and labels.

    Raises:
        SourceError: `data` is not an alerts answer.
    """
    found: list[FiringAlert] = []
    try:
        for alert in data["alerts"]:
            labels = {str(k): str(v) for k, v in dict(alert["labels"]).items()}
            name = labels.pop("alertname", "")
            if alert.get("state") != "firing" or not re.fullmatch(ALERT_MATCHER, name):
                continue
            annotations: Mapping[str, Any] = alert.get("annotations") or {}
            found.append(
                FiringAlert(
                    name=name,
                    severity=labels.pop("severity", ""),
                    labels=labels,
                    summary=str(annotations.get("summary", "")),
                    active_at=str(alert.get("activeAt", "")),
                )
            )
    except (KeyError, TypeError, ValueError) as exc:
        raise SourceError(f"not an alerts answer: {exc!r}") from None
    order = {severity: rank for rank, severity in enumerate(SEVERITIES)}
    found.sort(key=lambda a: (order.get(a.severity, len(order)), a.name, sorted(a.labels.items())))
    return tuple(found)


def read_metrics(prometheus: PrometheusApi) -> FleetMetrics:
    """Every metric and the firing alerts, from `prometheus`; the SourceError of the first
    query or answer that fails (the others are not asked)."""

    def query(promql: str) -> list[tuple[dict[str, str], float | None]]:
        return vector(prometheus.get("/api/v1/query", {"query": promql}))

    service = ("namespace", "service")
    servers = server_metrics(
        by_labels(query(QUEUE_QUERY), *service),
        by_labels(query(BUSY_QUERY), *service),
        by_labels(query(TOKENS_QUERY), *service),
    )
    group = ("team", "model", "tier")
    spills = {
        cast(tuple[str, str, str], key): value
        for key, value in by_labels(query(SPILLS_QUERY), *group).items()
        if value is not None
    }
    groups = frozenset(
        cast(tuple[str, str, str], k) for k in by_labels(query(GROUPS_QUERY), *group)
    )
    alerts = firing_alerts(prometheus.get("/api/v1/alerts", {}))
    return FleetMetrics(servers=servers, spills=spills, groups=groups, alerts=alerts)


def _identities(
    deployments: Sequence[ModelDeployment] | None, fleet: FleetMetrics | None
) -> list[ModelStatus]:
    """The rows before metrics: one per Deployment; without the API server's list, one per group
    the gateway routes and per Service the metrics name that no group explains."""
    if deployments is not None:
        return [
            ModelStatus(
                d.team,
                d.model,
                d.tier,
                d.namespace,
                d.name,
                d.desired_replicas,
                d.ready_replicas,
                d.digest,
            )
            for d in deployments
        ]
    if fleet is None:
        return []
    rows = [
        ModelStatus(team, model, tier, team_namespace(team), instance_name(model, tier))
        for team, model, tier in fleet.groups
    ]
    named = {(r.namespace, r.deployment) for r in rows}
    rows += [
        ModelStatus(namespace.removeprefix(NAMESPACE_PREFIX), None, None, namespace, service)
        for namespace, service in fleet.servers
        if (namespace, service) not in named
    ]
    return rows


def combine(
    deployments: Sequence[ModelDeployment] | None, fleet: FleetMetrics | None
) -> tuple[ModelStatus, ...]:
    """One row per Deployment (or, where `deployments` is None, per group or Service the
    metrics name) with its metrics (None where `fleet` is None or holds no series for it),
    sorted by team, model, tier."""
    rows: list[ModelStatus] = []
    for row in _identities(deployments, fleet):
        if fleet is None:
            rows.append(row)
            continue
        server = fleet.servers.get((row.namespace, row.deployment), ServerMetrics())
        spills = (
            None
            if row.model is None or row.tier is None
            else fleet.spills.get((row.team, row.model, row.tier), 0.0)
        )
        rows.append(
            replace(
                row,
                queue=server.queue,
                busy_slots=server.busy_slots,
                tokens_per_second=server.tokens_per_second,
                spills_per_second=spills,
            )
        )
    rows.sort(key=lambda r: (r.team, r.model or r.deployment, r.tier or ""))
    return tuple(rows)


def gather(
    stack: str, cluster: str, deployments: DeploymentLister, prometheus: PrometheusApi
) -> StackStatus:
    """Ask both sources and combine what they answered; each that failed is one SourceProblem
    (never raised)."""
    problems: list[SourceProblem] = []
    found: list[ModelDeployment] | None = None
    fleet: FleetMetrics | None = None
    try:
        found = model_deployments(deployments())
    except SourceError as exc:
        problems.append(SourceProblem(SOURCE_API_SERVER, str(exc)))
    try:
        fleet = read_metrics(prometheus)
    except SourceError as exc:
        problems.append(SourceProblem(SOURCE_PROMETHEUS, str(exc)))
    return StackStatus(
        stack=stack,
        cluster=cluster,
        models=combine(found, fleet),
        alerts=None if fleet is None else fleet.alerts,
        problems=tuple(problems),
    )


def to_json(status: StackStatus) -> dict[str, Any]:
    """The status as `llamafleet status --json` prints it (stable keys; null: unknown):

    {"stack": str, "cluster": str,
     "errors": {"apiServer": str | null, "prometheus": str | null},   (why a source failed)
     "models": [{"team": str, "model": str | null, "tier": str | null, "namespace": str,
                 "deployment": str, "desiredReplicas": int | null, "readyReplicas": int | null,
                 "digest": "sha256:<hex>" | null, "queue": float | null,
                 "busySlots": float | null, "tokensPerSecond": float | null,
                 "spillsPerSecond": float | null}, ...],
     "alerts": [{"alertname": str, "severity": str, "labels": {str: str}, "summary": str,
                 "activeAt": str}, ...] | null}                      (null: Prometheus failed)
    """
    api, prometheus = status.problem(SOURCE_API_SERVER), status.problem(SOURCE_PROMETHEUS)
    return {
        "stack": status.stack,
        "cluster": status.cluster,
        "errors": {
            "apiServer": None if api is None else api.reason,
            "prometheus": None if prometheus is None else prometheus.reason,
        },
        "models": [
            {
                "team": m.team,
                "model": m.model,
                "tier": m.tier,
                "namespace": m.namespace,
                "deployment": m.deployment,
                "desiredReplicas": m.desired_replicas,
                "readyReplicas": m.ready_replicas,
                "digest": m.digest,
                "queue": m.queue,
                "busySlots": m.busy_slots,
                "tokensPerSecond": m.tokens_per_second,
                "spillsPerSecond": m.spills_per_second,
            }
            for m in status.models
        ],
        "alerts": None
        if status.alerts is None
        else [
            {
                "alertname": a.name,
                "severity": a.severity,
                "labels": dict(a.labels),
                "summary": a.summary,
                "activeAt": a.active_at,
            }
            for a in status.alerts
        ],
    }
