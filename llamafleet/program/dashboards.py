"""The fleet's Grafana dashboards as the program declares them (and the tests check them): their
queries find each team's llama-servers in the namespace the settings give the team."""

from __future__ import annotations

from typing import Any

from llamafleet.monitoring.dashboards import fleet_dashboards
from llamafleet.monitoring.queries import FleetQueries
from llamafleet.settings.names import team_namespace


def stack_dashboards() -> dict[str, dict[str, Any]]:
    """Every dashboard's JSON model by uid (llamafleet.monitoring.dashboards), the same for every
    stack and cluster."""
    return fleet_dashboards(FleetQueries(team_namespace))
