"""PromQL as the dashboards hold it: every query of a dashboard's JSON model (panels and
template variables), Grafana's variables substituted by sample values, the metric names an
expression selects, and the exposition format's sample names."""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from typing import Any

# Grafana's own variables, as a Prometheus data source interpolates them for a query.
BUILTINS = {"__rate_interval": "1m", "__interval": "30s", "__range": "6h"}
# `$name`, `${name}`, `${name:format}` and the deprecated `[[name]]`.
_VARIABLE = re.compile(r"\$\{(\w+)(?::[^}]*)?\}|\$(\w+)|\[\[(\w+)(?::[^\]]*)?\]\]")
_LABEL_VALUES = re.compile(r"^label_values\((?:(?P<selector>.*),\s*)?(?P<label>\w+)\)$")
_STRING = re.compile(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'|`[^`]*`')
_MATCHERS = re.compile(r"\{[^}]*\}")
_RANGE = re.compile(r"\[[^\]]*\]")
_LABEL_LIST = re.compile(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)")
_IDENTIFIER = re.compile(r"(?<![\w:.])[a-zA-Z_:][\w:]*")
KEYWORDS = {
    "and",
    "or",
    "unless",
    "by",
    "without",
    "on",
    "ignoring",
    "group_left",
    "group_right",
    "bool",
    "offset",
    "inf",
    "nan",
}


def substitute(expr: str, values: Mapping[str, str]) -> str:
    """`expr` with each Grafana variable in `values` (and Grafana's own: $__rate_interval,
    $__interval, $__range) replaced by its value; other `$` references (label_replace's `$1`)
    are left alone."""
    known = {**BUILTINS, **values}

    def value(match: re.Match[str]) -> str:
        name = next(group for group in match.groups() if group is not None)
        return known.get(name, match.group(0))

    return _VARIABLE.sub(value, expr)


def queries(dashboard: Mapping[str, Any]) -> Iterator[tuple[str, str]]:
    """(where, PromQL) for every query of a dashboard's JSON model: each panel target's `expr`
    (rows' nested panels included) and the series selector of each `label_values` variable."""
    uid = dashboard["uid"]
    panels: list[Mapping[str, Any]] = list(dashboard.get("panels", []))
    for panel in panels:
        panels.extend(panel.get("panels", []))
        for target in panel.get("targets", []):
            yield f"{uid} panel {panel['id']} {target['refId']}", target["expr"]
    for variable in dashboard.get("templating", {}).get("list", []):
        if variable["type"] != "query":
            continue
        found = _LABEL_VALUES.match(variable["query"])
        if found is None:
            raise AssertionError(f"{uid}: variable {variable['name']}: {variable['query']!r}")
        if found["selector"]:
            yield f"{uid} variable {variable['name']}", found["selector"]


def metric_names(expr: str) -> set[str]:
    """The metric names a PromQL expression selects: what remains once strings, label
    matchers, ranges and label lists are gone, less function calls and keywords."""
    bare = _STRING.sub('""', expr)
    bare = _MATCHERS.sub(" ", bare)
    bare = _RANGE.sub(" ", bare)
    bare = _LABEL_LIST.sub(" ", bare)
    names: set[str] = set()
    for match in _IDENTIFIER.finditer(bare):
        name = match.group(0)
        rest = bare[match.end() :].lstrip()
        if name in KEYWORDS or rest.startswith("("):
            continue
        names.add(name)
    return names


def exposition_names(text: str) -> set[str]:
    """The metric names of the samples in a Prometheus text exposition (HELP and TYPE lines
    alone do not count: a family with no sample exports nothing yet)."""
    names: set[str] = set()
    for line in text.splitlines():
        if line and not line.startswith("#"):
            names.add(re.split(r"[{\s]", line, maxsplit=1)[0])
    return names


_SAMPLE = re.compile(r"^(?P<name>[a-zA-Z_:][\w:]*)(?:\{(?P<labels>.*)\})?\s+(?P<value>\S+)")
_LABEL = re.compile(r'(\w+)="((?:[^"\\]|\\.)*)"')


def samples(text: str, name: str) -> list[tuple[dict[str, str], float]]:
    """The samples of metric `name` in a text exposition: (labels, value) each."""
    found: list[tuple[dict[str, str], float]] = []
    for line in text.splitlines():
        match = _SAMPLE.match(line)
        if match is not None and match["name"] == name:
            found.append((dict(_LABEL.findall(match["labels"] or "")), float(match["value"])))
    return found
