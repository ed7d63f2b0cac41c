"""PromQL for the fleet's dashboards: selectors over the Grafana template variables, and the joins
that give each series the team, model and tier it belongs to. Plain strings; every metric name
comes from llamafleet.monitoring.metrics.

Where the labels come from:
- the gateway's metrics carry `team`, `model` and `tier` themselves;
- llama-server's carry the scrape's `namespace` and `pod`: the team is the namespace
  (`team_namespace`), model and tier come from kube-state-metrics' kube_pod_labels (the pods'
  llamafleet.io/model and llamafleet.io/tier labels), joined on (namespace, pod);
- Deployments' from kube_deployment_labels, joined on (namespace, deployment);
- nodes' tier from kube_node_labels; node_exporter's series are mapped to their node through
  kube_pod_info of the node_exporter pod that exported them (as kube-prometheus' own rules do).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Final

from llamafleet.components.labels import MODEL_LABEL, TIER_LABEL
from llamafleet.monitoring import metrics

# The Grafana template variables the queries use ($__rate_interval and $__range are Grafana's
# own: a rate window of at least four scrapes, and the dashboard's time range).
TEAM: Final = "team"
MODEL: Final = "model"
TIER: Final = "tier"
RATE: Final = "$__rate_interval"
RANGE: Final = "$__range"
# kube-state-metrics' names for the pods', Deployments' and nodes' labels.
MODEL_KSM: Final = metrics.label_metric_name(MODEL_LABEL)
TIER_KSM: Final = metrics.label_metric_name(TIER_LABEL)


def var(name: str) -> str:
    """A Grafana variable reference, `${name}`: a single value as is, several as a regex
    alternation `(a|b)`, All as `.*` (the variables' allValue), so it belongs in `=~"…"`."""
    return f"${{{name}}}"


def label_values(selector: str, label: str) -> str:
    """A Grafana Prometheus variable query: the values of `label` on the series of `selector`."""
    return f"label_values({selector}, {label})"


@dataclass(frozen=True)
class FleetQueries:
    """The PromQL the dashboards run, for a fleet whose team namespaces are named by
    `team_namespace` (llamafleet.settings.names.team_namespace: a team's name, or a regex
    standing for several, -> its namespace)."""

    team_namespace: Callable[[str], str]

    @property
    def gateway_selector(self) -> str:
        """The gateway's series of the selected teams, models and tiers (matchers, no braces)."""
        return f'{TEAM}=~"{var(TEAM)}",{MODEL}=~"{var(MODEL)}",{TIER}=~"{var(TIER)}"'

    @property
    def team_selector(self) -> str:
        """The gateway's series of the selected teams (its rejections carry no model or tier)."""
        return f'{TEAM}=~"{var(TEAM)}"'

    @property
    def namespaces(self) -> str:
        """The selected teams' namespaces, as a `namespace=~` matcher."""
        return f'namespace=~"{self.team_namespace(var(TEAM))}"'

    def _team_model_tier(self, vector: str) -> str:
        """`vector` (carrying namespace and kube-state-metrics' model and tier labels) with
        `team`, `model` and `tier` labels, as the gateway's series carry them."""
        with_team = (
            f'label_replace({vector}, "{TEAM}", "$1", "namespace", "{self.team_namespace("(.*)")}")'
        )
        with_model = f'label_replace({with_team}, "{MODEL}", "$1", "{MODEL_KSM}", "(.*)")'
        return f'label_replace({with_model}, "{TIER}", "$1", "{TIER_KSM}", "(.*)")'

    def _selected(self) -> str:
        return f'{self.namespaces},{MODEL_KSM}=~"{var(MODEL)}",{TIER_KSM}=~"{var(TIER)}"'

    def server(self, metric: str, by: str, *, rate: bool = False) -> str:
        """A llama-server metric of the selected teams, models and tiers, summed by `by` (a
        comma-separated subset of team, model, tier); `rate`: its per-second rate."""
        series = f"{metric}{{{self.namespaces}}}"
        if rate:
            series = f"rate({series}[{RATE}])"
        joined = (
            f"{series} * on (namespace, pod) group_left ({MODEL_KSM}, {TIER_KSM})"
            f" {metrics.POD_LABELS}{{{self._selected()}}}"
        )
        return f"sum by ({by}) ({self._team_model_tier(joined)})"

    def deployments(self, metric: str, by: str) -> str:
        """A kube-state-metrics Deployment metric of the selected teams' llama-server
        Deployments, models and tiers, summed by `by`."""
        joined = (
            f"{metric}{{{self.namespaces}}} * on (namespace, deployment) group_left"
            f" ({MODEL_KSM}, {TIER_KSM}) {metrics.DEPLOYMENT_LABELS}{{{self._selected()}}}"
        )
        return f"sum by ({by}) ({self._team_model_tier(joined)})"

    def gateway(self, metric: str, by: str, *, matchers: str = "", window: str = RATE) -> str:
        """A gateway counter's per-second rate over `window` for the selected teams, models and
        tiers (and `matchers`), summed by `by`."""
        where = ",".join(m for m in (self.gateway_selector, matchers) if m)
        return f"sum by ({by}) (rate({metric}{{{where}}}[{window}]))"

    def gateway_increase(self, metric: str, by: str) -> str:
        """A gateway counter's increase over the dashboard's time range, summed by `by`."""
        return f"sum by ({by}) (increase({metric}{{{self.gateway_selector}}}[{RANGE}]))"

    def per_request(self, seconds: str) -> str:
        """Seconds of llama-server's `seconds` counter per request the gateway answered, by
        team, model and tier (llama-server counts no requests of its own)."""
        by = f"{TEAM}, {MODEL}, {TIER}"
        answered = self.gateway(metrics.GATEWAY_REQUESTS, by, matchers='outcome="ok"')
        return f"{self.server(seconds, by, rate=True)} / {answered}"

    def per_token(self, seconds: str, tokens: str) -> str:
        """Seconds of llama-server's `seconds` counter per token of its `tokens` counter, by
        model and tier."""
        by = f"{MODEL}, {TIER}"
        return f"{self.server(seconds, by, rate=True)} / {self.server(tokens, by, rate=True)}"


def selector(metric: str, matchers: str = "") -> str:
    """`metric{matchers}`, or `metric` alone without matchers."""
    return f"{metric}{{{matchers}}}" if matchers else metric


def _selected_tiers() -> str:
    """Matchers for a selected tier's label on kube-state-metrics' *_labels metrics (the
    objects of other workloads carry none)."""
    return f'{TIER_KSM}=~"{var(TIER)}",{TIER_KSM}!=""'


def tier_pods(metric: str, matchers: str = "") -> str:
    """A kube-state-metrics pod metric (with `matchers`) of the pods labelled with a selected
    tier, with that tier as `label_llamafleet_io_tier`."""
    return (
        f"{selector(metric, matchers)} * on (namespace, pod) group_left ({TIER_KSM})"
        f" {metrics.POD_LABELS}{{{_selected_tiers()}}}"
    )


def live_pods(vector: str) -> str:
    """`vector` (namespace, pod) kept for the pods that are Pending or Running: a finished pod
    holds no resources."""
    live = f'max by (namespace, pod) ({metrics.POD_PHASE}{{phase=~"Pending|Running"}}) == 1'
    return f"({vector}) * on (namespace, pod) group_left () ({live})"


def tier_node_labels() -> str:
    """kube_node_labels of the nodes of the selected tiers: one series per node."""
    return f"{metrics.NODE_LABELS}{{{_selected_tiers()}}}"


def tier_nodes(metric: str, matchers: str = "") -> str:
    """A kube-state-metrics node metric (with `matchers`) of the nodes of the selected tiers,
    with their tier as `label_llamafleet_io_tier`."""
    return f"{selector(metric, matchers)} * on (node) group_left ({TIER_KSM}) {tier_node_labels()}"


def on_tier_nodes(vector: str) -> str:
    """`vector` (node_exporter's series: the scrape's namespace and pod are node_exporter's pod)
    with its node's tier as `label_llamafleet_io_tier`, for the nodes of the selected tiers."""
    node_of_pod = selector(metrics.POD_INFO, 'node!=""')
    with_node = f"({vector}) * on (namespace, pod) group_left (node) {node_of_pod}"
    return f"({with_node}) * on (node) group_left ({TIER_KSM}) {tier_node_labels()}"
