"""The fleet's dashboards: every query (panels and template variables) parses with the pinned
promtool once Grafana's variables are substituted, as one value, several and All; a broken one
does not; every metric a query or alert names is in llamafleet.monitoring.metrics, where each
name belongs to the binary that exports it (tests/monitoring/test_node_exporter_metrics.py,
tests/e2e/test_e2e_kube_state_metrics.py and tests/image/test_exported_metrics.py list what those
binaries really export); and each model is JSON Grafana loads: unique ids, the `datasource`
variable on every panel."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from support.promql import metric_names, queries, substitute

from llamafleet.monitoring import metrics
from llamafleet.monitoring.alerts import AlertsConfig, Deployed, alerts
from llamafleet.monitoring.queries import MODEL, TEAM, TIER
from llamafleet.program.alerting import cluster_rules
from llamafleet.program.dashboards import stack_dashboards
from llamafleet.settings.load import load_stack_file
from llamafleet.settings.placement import placements

REPO = Path(__file__).resolve().parents[2]
STACKS = sorted((REPO / "stacks").glob("Pulumi.*.yaml"))
# Grafana's values for a multi-value variable: one value as is, several as a regex alternation,
# All as the variables' allValue.
FORMS = {
    "one": {TEAM: "search", MODEL: "llama31-8b", TIER: "cpu-avx2"},
    "several": {TEAM: "(search|support)", MODEL: "(llama31-8b|qwen25-7b)", TIER: "(a|b-c)"},
    "all": {TEAM: ".*", MODEL: ".*", TIER: ".*"},
}
DASHBOARDS = stack_dashboards()


def _all_queries() -> list[tuple[str, str]]:
    return [query for model in DASHBOARDS.values() for query in queries(model)]


def _record_rules(exprs: list[tuple[str, str]]) -> dict[str, Any]:
    """A rule file with each expression as a recording rule (`promtool check rules` parses
    every `expr` with the release's own PromQL parser)."""
    rules = [
        {"record": f"llamafleet:dashboard_query:{i}", "expr": e} for i, (_, e) in enumerate(exprs)
    ]
    return {"groups": [{"name": "llamafleet-dashboards", "rules": rules}]}


def _check(
    promtool: Path, tmp_path: Path, exprs: list[tuple[str, str]]
) -> subprocess.CompletedProcess[str]:
    (tmp_path / "dashboards.yaml").write_text(yaml.safe_dump(_record_rules(exprs), sort_keys=False))
    return subprocess.run(
        [str(promtool), "check", "rules", "dashboards.yaml"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )


def test_the_fleet_has_its_three_dashboards() -> None:
    assert set(DASHBOARDS) == {
        "llamafleet-fleet-overview",
        "llamafleet-team-usage",
        "llamafleet-tier-capacity",
    }
    # Panels: 8 on the fleet overview, 9 for the teams, 7 for the tiers (rows apart).
    assert {uid: sum(p["type"] != "row" for p in m["panels"]) for uid, m in DASHBOARDS.items()} == {
        "llamafleet-fleet-overview": 8,
        "llamafleet-team-usage": 9,
        "llamafleet-tier-capacity": 7,
    }


@pytest.mark.parametrize("form", sorted(FORMS))
def test_every_query_parses_with_promtool(form: str, promtool: Path, tmp_path: Path) -> None:
    exprs = [(where, substitute(expr, FORMS[form])) for where, expr in _all_queries()]
    done = _check(promtool, tmp_path, exprs)
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"SUCCESS: {len(exprs)} rules found" in done.stdout, done.stdout


def test_promtool_check_fails_on_a_broken_query(promtool: Path, tmp_path: Path) -> None:
    """The check can fail: a query with a parenthesis missing, and a query whose Grafana
    variables were not substituted, are both refused."""
    where, expr = _all_queries()[0]
    good = substitute(expr, FORMS["one"])
    assert good.endswith(")"), good
    broken = _check(promtool, tmp_path, [(where, good[:-1])])
    assert broken.returncode != 0
    assert "parse error" in broken.stdout + broken.stderr, broken.stdout + broken.stderr
    raw = _check(promtool, tmp_path, [(where, expr)])
    assert raw.returncode != 0 and "$__rate_interval" in expr


def test_every_variable_a_query_uses_is_defined() -> None:
    for model in DASHBOARDS.values():
        defined = {v["name"] for v in model["templating"]["list"]}
        values = dict.fromkeys(defined, "x")
        for where, expr in queries(model):
            left = re.findall(r"\$\{?\w+", substitute(expr, values))
            # label_replace's `$1` is PromQL's, not Grafana's.
            assert all(ref.lstrip("${").isdigit() for ref in left), (where, left)


def test_queries_name_only_metrics_a_pinned_binary_exports() -> None:
    exported = set().union(*metrics.EXPORTERS.values())
    named = {name for _, expr in _all_queries() for name in metric_names(expr)}
    assert named - exported == set()
    # Every binary's metrics are on some dashboard, or in some alert (the model fetcher's, which
    # exist only while a pod is in Init, say why its fetch fails: LlamafleetModelFetchFailing).
    deployed = Deployed("llamafleet-search", "m-t", "search", "m", "t", max_replicas=2)
    alerted = {
        name
        for alert in alerts([deployed], "llamafleet-gateway", AlertsConfig())
        for name in metric_names(alert.expr)
    }
    assert all(names & (named | alerted) for names in metrics.EXPORTERS.values())


@pytest.mark.parametrize("stack", STACKS, ids=lambda p: p.name)
def test_alerts_name_only_metrics_a_pinned_binary_exports(stack: Path) -> None:
    settings = load_stack_file(stack)
    exported = set().union(*metrics.EXPORTERS.values())
    for cluster in sorted({p.cluster_name for p in placements(settings)}):
        for rule in cluster_rules(settings, cluster)["groups"][0]["rules"]:
            assert metric_names(rule["expr"]) - exported == set(), rule["alert"]


def test_every_metric_name_belongs_to_exactly_one_binary() -> None:
    defined = {
        value for name, value in vars(metrics).items() if name.isupper() and isinstance(value, str)
    }
    groups = list(metrics.EXPORTERS.values())
    assert set().union(*groups) == defined
    assert sum(len(g) for g in groups) == len(defined)


def test_metric_names_sees_through_joins_strings_and_ranges() -> None:
    expr = (
        'sum by (team, model) (label_replace(rate(a:b_total{x=~"y(z)"}[5m]) * on (namespace, '
        'pod) group_left (label_q) c_info{d!=""}, "t", "$1", "namespace", "n-(.*)")) / '
        "max without (cpu) (e offset 5m) > bool 1e3 and topk(3, f)"
    )
    assert metric_names(expr) == {"a:b_total", "c_info", "e", "f"}


def test_each_model_is_grafana_json_with_unique_ids() -> None:
    for uid, model in DASHBOARDS.items():
        assert model["uid"] == uid and len(uid) <= 40
        assert model["tags"] == ["llamafleet"] and model["editable"] is False
        variables = model["templating"]["list"]
        assert [v["id"] for v in variables] == [v["name"] for v in variables]
        assert variables[0] == {**variables[0], "type": "datasource", "query": "prometheus"}
        panels = model["panels"]
        assert len({p["id"] for p in panels}) == len(panels)
        for panel in panels:
            if panel["type"] == "row":
                continue
            assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}
            assert isinstance(panel["options"], dict), panel["title"]
            assert panel["description"] and panel["fieldConfig"]["defaults"]["unit"]
            refs = [t["refId"] for t in panel["targets"]]
            assert refs and len(set(refs)) == len(refs) and all(refs)


def test_the_models_are_the_same_on_every_run() -> None:
    """Generated anew on every preview: any difference would show as a change."""
    assert stack_dashboards() == DASHBOARDS
