"""The alerts of each cluster, from a stack's settings (plain data: `llamafleet render`, the tests
and the program use the same rule file)."""

from __future__ import annotations

from typing import Any

from llamafleet.monitoring.alerts import Deployed, alerts, rule_file
from llamafleet.settings.names import team_namespace
from llamafleet.settings.placement import placements
from llamafleet.settings.schema import Settings


def cluster_rules(settings: Settings, cluster_name: str) -> dict[str, Any]:
    """The Prometheus rule file of cluster `cluster_name`: the alerts of the Deployments placed
    there and of its gateway, with `alerting`'s durations and runbook URL."""
    deployed = [
        Deployed(
            namespace=team_namespace(p.team),
            name=p.name,
            team=p.team,
            model=p.model_name,
            tier=p.tier_name,
            max_replicas=p.model.replicas.max,
        )
        for p in placements(settings)
        if p.cluster_name == cluster_name
    ]
    alerting = settings.alerting
    runbook_url = None if alerting.runbook_url is None else str(alerting.runbook_url)
    fleet = alerts(deployed, settings.serving.gateway_namespace, alerting.alerts)
    return rule_file(fleet, runbook_url)
