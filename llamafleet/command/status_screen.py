"""`llamafleet status`'s screen: a StackStatus drawn with rich, one table of the models (per team,
model and tier) and one of the firing alerts. What a source did not give is shown as `-`."""

from __future__ import annotations

from typing import Final

from rich import box
from rich.console import Console, Group, RenderableType
from rich.table import Table
from rich.text import Text

from llamafleet.command.status import (
    SOURCE_API_SERVER,
    SOURCE_PROMETHEUS,
    FiringAlert,
    ModelStatus,
    StackStatus,
)

UNKNOWN: Final = "-"
# Hex digits of a model's sha256 shown on screen (`--json` gives the whole digest).
DIGEST_HEX_SHOWN: Final = 12
SEVERITY_STYLES: Final = {"critical": "bold red", "warning": "yellow", "info": "cyan"}
# The labels that say where an alert is, in this order.
WHERE_LABELS: Final = ("team", "model", "tier", "namespace", "service", "deployment")


def short_digest(digest: str | None) -> str:
    """The first DIGEST_HEX_SHOWN hex digits of `sha256:<hex>` (as image IDs are shown);
    UNKNOWN for None."""
    if digest is None:
        return UNKNOWN
    return digest.partition(":")[2][:DIGEST_HEX_SHOWN] or digest


def number(value: float | None, decimals: int | None = None) -> str:
    """`value` with `decimals` decimals (None: as short as it is, 3 -> "3"); UNKNOWN for None."""
    if value is None:
        return UNKNOWN
    return f"{value:g}" if decimals is None else f"{value:.{decimals}f}"


def replicas(model: ModelStatus) -> Text:
    """`ready/desired`, in yellow while fewer are ready than desired; UNKNOWN without both."""
    if model.ready_replicas is None or model.desired_replicas is None:
        return Text(UNKNOWN)
    short = model.ready_replicas < model.desired_replicas
    return Text(f"{model.ready_replicas}/{model.desired_replicas}", "yellow" if short else "")


def _table(title: str) -> Table:
    """A table that fits 80 columns where it can: no vertical rules, a rule under the head."""
    return Table(
        title=title,
        box=box.SIMPLE_HEAD,
        show_edge=False,
        pad_edge=False,
        collapse_padding=True,
        title_justify="left",
    )


def models_table(status: StackStatus) -> Table:
    """One row per team, model and tier: ready/desired replicas, queue (requests waiting for a
    slot), busy slots, tokens/s, requests/s the gateway spilled into that tier, and the model
    digest (sha256, its first DIGEST_HEX_SHOWN hex digits). Names fold rather than lose
    characters on a narrow terminal."""
    table = _table(f"llamafleet status {status.stack} (cluster {status.cluster})")
    for header in ("team", "model", "tier"):
        table.add_column(header, overflow="fold")
    for header in ("ready", "queue", "busy", "tok/s", "spill/s"):
        table.add_column(header, justify="right", no_wrap=True)
    table.add_column("digest", no_wrap=True)
    for m in status.models:
        table.add_row(
            m.team,
            m.model or Text(m.deployment, "dim"),
            m.tier or UNKNOWN,
            replicas(m),
            number(m.queue),
            number(m.busy_slots),
            number(m.tokens_per_second, 1),
            number(m.spills_per_second, 2),
            short_digest(m.digest),
        )
    return table


def where(alert: FiringAlert) -> str:
    """Where an alert fires: its WHERE_LABELS' values, `label=value`, one a line."""
    return "\n".join(f"{k}={alert.labels[k]}" for k in WHERE_LABELS if k in alert.labels)


def alerts_view(status: StackStatus) -> RenderableType:
    """The firing alerts as a table; a line where there are none or Prometheus did not answer."""
    if status.alerts is None:
        return Text(f"firing alerts: {UNKNOWN} ({SOURCE_PROMETHEUS} did not answer)")
    if not status.alerts:
        return Text("firing alerts: none")
    table = _table("firing alerts")
    for header in ("severity", "alert", "where", "summary"):
        table.add_column(header, overflow="fold")
    for alert in status.alerts:
        table.add_row(
            Text(alert.severity or UNKNOWN, SEVERITY_STYLES.get(alert.severity, "")),
            alert.name,
            where(alert),
            alert.summary,
        )
    return table


def screen(status: StackStatus) -> Group:
    """The whole screen: the models table (or a line saying there are none) and the alerts."""
    if status.models:
        models: RenderableType = models_table(status)
    elif status.problem(SOURCE_API_SERVER) is not None:
        models = Text(
            f"{status.stack} (cluster {status.cluster}): {UNKNOWN} ({SOURCE_API_SERVER} did not "
            "answer)"
        )
    else:
        models = Text(f"{status.stack} (cluster {status.cluster}): no llama-server Deployments")
    return Group(models, Text(), alerts_view(status))


def show(status: StackStatus, console: Console | None = None) -> None:
    """Print the screen on `console` (default: stdout, rich's terminal detection)."""
    (console or Console()).print(screen(status))
