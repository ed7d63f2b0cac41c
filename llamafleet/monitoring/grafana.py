"""Grafana building blocks over grafana-foundation-sdk (Grafana's maintained dashboard builders):
Prometheus panels whose data source is the dashboard's `datasource` variable, multi-value query
variables with an All option, and a dashboard as the JSON Grafana loads (a ConfigMap for
kube-prometheus-stack's sidecar, or a file a provisioned Grafana reads)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Final

from grafana_foundation_sdk.builders.common import VizLegendOptions, VizTooltipOptions
from grafana_foundation_sdk.builders.dashboard import (
    Dashboard,
    DashboardLink,
    DatasourceVariable,
    QueryVariable,
    Row,
)
from grafana_foundation_sdk.builders.prometheus import Dataquery
from grafana_foundation_sdk.builders.stat import Panel as Stat
from grafana_foundation_sdk.builders.timeseries import Panel as Timeseries
from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.models.common import (
    BigValueGraphMode,
    LegendDisplayMode,
    LegendPlacement,
    SortOrder,
    TooltipDisplayMode,
)
from grafana_foundation_sdk.models.dashboard import (
    DashboardLinkType,
    DataSourceRef,
    VariableOption,
    VariableRefresh,
    VariableSort,
)

from llamafleet.monitoring.queries import var

DATASOURCE: Final = "datasource"
TAG: Final = "llamafleet"
# Every panel queries the Prometheus the dashboard's data source variable selects.
PROMETHEUS: Final = DataSourceRef(type_val="prometheus", uid=var(DATASOURCE))
PANEL_HEIGHT: Final = 8

PanelBuilder = Timeseries | Stat
Variable = QueryVariable | DatasourceVariable


@dataclass(frozen=True)
class Target:
    """One query of a panel: PromQL `expr` and its series' legend (`{{label}}` templates)."""

    expr: str
    legend: str


@dataclass(frozen=True)
class Section:
    """A row of a dashboard: its title and panels, laid out left to right."""

    title: str
    panels: Sequence[PanelBuilder]


def _queries(targets: Sequence[Target], *, instant: bool) -> list[Dataquery]:
    queries: list[Dataquery] = []
    for ref, target in zip("ABCDEFGH", targets, strict=False):
        query = Dataquery().expr(target.expr).legend_format(target.legend).ref_id(ref)
        queries.append(query.instant() if instant else query.range())
    return queries


def timeseries(
    title: str, description: str, unit: str, targets: Sequence[Target], *, width: int = 8
) -> Timeseries:
    """A time series panel of `targets` in `unit` (a Grafana unit id: `short`, `s`, `reqps`,
    `bytes`, `percentunit`), `width` of the dashboard's 24 columns, legend as a table."""
    panel = (
        Timeseries()
        .title(title)
        .description(description)
        .datasource(PROMETHEUS)
        .unit(unit)
        .min(0)
        .span(width)
        .height(PANEL_HEIGHT)
        .legend(
            VizLegendOptions()
            .display_mode(LegendDisplayMode.TABLE)
            .placement(LegendPlacement.BOTTOM)
            .show_legend(True)
            .calcs(["mean", "max", "lastNotNull"])
        )
        .tooltip(VizTooltipOptions().mode(TooltipDisplayMode.MULTI).sort(SortOrder.DESCENDING))
    )
    for query in _queries(targets, instant=False):
        panel = panel.with_target(query)
    return panel


def stat(
    title: str, description: str, unit: str, targets: Sequence[Target], *, width: int = 8
) -> Stat:
    """A stat panel of `targets` evaluated once, at the end of the dashboard's time range."""
    panel = (
        Stat()
        .title(title)
        .description(description)
        .datasource(PROMETHEUS)
        .unit(unit)
        .span(width)
        .height(PANEL_HEIGHT)
        .graph_mode(BigValueGraphMode.NONE)
    )
    for query in _queries(targets, instant=True):
        panel = panel.with_target(query)
    return panel


# Each variable's id is its name: the SDK's default id is one and the same for all of them.


def datasource_variable() -> DatasourceVariable:
    """The `datasource` variable: which Prometheus every panel queries (the default one
    first)."""
    return DatasourceVariable(DATASOURCE).id(DATASOURCE).label("Data source").type("prometheus")


def query_variable(name: str, label: str, query: str) -> QueryVariable:
    """A multi-value variable `name` whose values `query` (a Grafana label_values query) lists
    from the selected data source, refreshed with the time range; All (the default) matches
    every value (`.*`)."""
    return (
        QueryVariable(name)
        .id(name)
        .label(label)
        .datasource(PROMETHEUS)
        .query(query)
        .multi(True)
        .include_all(True)
        .all_value(".*")
        .current(VariableOption(selected=True, text="All", value="$__all"))
        .refresh(VariableRefresh.ON_TIME_RANGE_CHANGED)
        .sort(VariableSort.ALPHABETICAL_ASC)
    )


def dashboard(
    uid: str,
    title: str,
    description: str,
    variables: Sequence[Variable],
    sections: Sequence[Section],
) -> dict[str, Any]:
    """The dashboard's JSON model: `sections` as rows, panels numbered from 1 in order, read
    only (it is generated: edits belong in this code), linked to the fleet's other dashboards
    (tag TAG) with the same variables and time range.

    Raises:
        ValueError: `uid` is longer than Grafana's 40 characters.
    """
    if len(uid) > 40:
        raise ValueError(f"dashboard uid {uid!r} is longer than Grafana's 40 characters")
    builder = (
        Dashboard(title)
        .uid(uid)
        .description(description)
        .tags([TAG])
        .readonly()
        .time("now-6h", "now")
        .refresh("1m")
        .timezone("browser")
        .link(
            DashboardLink("Fleet dashboards")
            .type(DashboardLinkType.DASHBOARDS)
            .tags([TAG])
            .as_dropdown(True)
            .include_vars(True)
            .keep_time(True)
        )
    )
    for variable in variables:
        builder = builder.with_variable(variable)
    panel_id = 0
    for section in sections:
        panel_id += 1
        builder = builder.with_row(Row(section.title).id(panel_id))
        for panel in section.panels:
            panel_id += 1
            builder = builder.with_panel(panel.id(panel_id))
    encoded: dict[str, Any] = json.loads(JSONEncoder(sort_keys=True).encode(builder.build()))
    return encoded
