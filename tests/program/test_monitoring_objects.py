"""The alerts and dashboards as every stack renders them (FleetMonitoring): one rule file per
serving cluster, in the form its Prometheus loads, equal to the rules the settings generate;
receivers' secrets only in Secrets, marked secret; one ConfigMap per dashboard, labelled for
Grafana's sidecar; and the add-on values that make kube-prometheus-stack pick them up."""

from __future__ import annotations

import json
from typing import Any

import yaml
from pulumi.runtime.rpc import is_rpc_secret
from pydantic import SecretStr

from llamafleet.command.mock_run import Declared, run_program
from llamafleet.command.render import Rendered, cluster_of, is_kubernetes_object
from llamafleet.components.alert_routing import PagerDuty, Receiver, Slack, routes_by_severity
from llamafleet.components.cluster_addons import ClusterAddonsConfig, _prometheus_values  # pyright: ignore[reportPrivateUsage]
from llamafleet.components.monitoring import (
    ALERTMANAGER_FILE,
    NAME,
    RULES_FILE,
    FleetMonitoring,
    FleetMonitoringArgs,
    dashboard_file,
)
from llamafleet.components.pod_security import restricted_namespace_labels
from llamafleet.program.alerting import cluster_rules
from llamafleet.program.dashboards import stack_dashboards
from llamafleet.settings.load import load_stack_file, stack_file
from llamafleet.settings.placement import placements

RULES = {"groups": [{"name": "llamafleet", "rules": [{"alert": "A", "expr": "vector(1)"}]}]}
DASHBOARDS = {"llamafleet-a": {"uid": "llamafleet-a", "panels": []}}
RECEIVERS = {
    "oncall": Receiver(pagerduty=PagerDuty(routing_key=SecretStr("pd-key"))),
    "chat": Receiver(slack=Slack(api_url=SecretStr("https://hooks.example/T0/B0/x"), channel="#a")),
}


def _rule_objects(rendered: Rendered) -> dict[str, dict[str, Any]]:
    return {
        cluster_of(d): d.inputs
        for d in rendered.declared
        if is_kubernetes_object(d)
        and d.inputs["kind"] in ("PrometheusRule", "ConfigMap")
        and d.inputs["metadata"]["name"] == NAME
    }


def test_each_serving_cluster_gets_its_rules_in_the_form_its_prometheus_loads(
    stack: str, rendered: Rendered
) -> None:
    settings = load_stack_file(stack_file(stack))
    serving = {p.cluster_name for p in placements(settings)}
    found = _rule_objects(rendered)
    assert set(found) == serving
    for cluster, obj in found.items():
        cluster_settings = settings.clusters[cluster]
        assert obj["metadata"]["namespace"] == cluster_settings.monitoring_namespace
        if cluster_settings.service_monitors:
            assert obj["kind"] == "PrometheusRule"
            assert obj["spec"] == cluster_rules(settings, cluster)
        else:
            assert obj["kind"] == "ConfigMap"
            assert yaml.safe_load(obj["data"][RULES_FILE]) == cluster_rules(settings, cluster)


def test_each_serving_cluster_gets_every_dashboard_in_a_configmap_grafana_loads(
    stack: str, rendered: Rendered
) -> None:
    settings = load_stack_file(stack_file(stack))
    serving = {p.cluster_name for p in placements(settings)}
    dashboards = stack_dashboards()
    found: dict[str, dict[str, dict[str, Any]]] = {}
    for d in rendered.declared:
        if is_kubernetes_object(d) and d.inputs["metadata"]["name"] in dashboards:
            found.setdefault(cluster_of(d), {})[d.inputs["metadata"]["name"]] = d.inputs
    assert set(found) == serving
    for cluster, objects in found.items():
        assert set(objects) == set(dashboards)
        for uid, obj in objects.items():
            assert obj["kind"] == "ConfigMap"
            metadata = obj["metadata"]
            assert metadata["namespace"] == settings.clusters[cluster].monitoring_namespace
            assert metadata["labels"]["grafana_dashboard"] == "1"
            assert obj["data"].keys() == {f"{uid}.json"}
            assert json.loads(obj["data"][f"{uid}.json"]) == dashboards[uid]


def test_receiver_secrets_stay_in_secrets_marked_secret(stack: str, rendered: Rendered) -> None:
    settings = load_stack_file(stack_file(stack))
    monitoring = [
        d
        for d in rendered.declared
        if is_kubernetes_object(d)
        and d.parent.endswith("FleetMonitoring::" + d.parent.split("::")[-1])
    ]
    secrets = [d for d in monitoring if d.inputs["kind"] == "Secret"]
    assert bool(secrets) == bool(settings.alerting.receivers)
    for secret in secrets:
        assert is_rpc_secret(secret.inputs["stringData"])
    for other in monitoring:
        if other.inputs["kind"] != "Secret":
            assert "[encrypted]" not in yaml.safe_dump(other.inputs)


def _declare(args: FleetMonitoringArgs) -> dict[str, Declared]:
    def program() -> None:
        FleetMonitoring("mon", args)

    return {
        f"{d.inputs['kind']}/{d.inputs['metadata']['name']}": d
        for d in run_program(program, "test", {})
        if is_kubernetes_object(d)
    }


def _plain(value: Any) -> Any:
    return value["value"] if is_rpc_secret(value) else value


def test_without_the_operator_receivers_become_an_alertmanager_fragment_in_a_secret() -> None:
    objects = _declare(
        FleetMonitoringArgs(
            namespace="monitoring",
            rules=RULES,
            operator=False,
            receivers=RECEIVERS,
            severities=routes_by_severity(RECEIVERS, {"warning": "chat"}),
        )
    )
    assert set(objects) == {"ConfigMap/llamafleet-alerts", "Secret/llamafleet-alert-receivers"}
    string_data = objects["Secret/llamafleet-alert-receivers"].inputs["stringData"]
    assert is_rpc_secret(string_data)
    data = _plain(string_data)
    fragment = yaml.safe_load(_plain(data[ALERTMANAGER_FILE]))
    assert fragment["route"]["matchers"] == ['alertname=~"Llamafleet.*"']
    routes = {r["matchers"][0]: r["receiver"] for r in fragment["route"]["routes"]}
    # warning as routed; the others to the first receiver.
    assert routes == {
        'severity="critical"': "oncall",
        'severity="warning"': "chat",
        'severity="info"': "oncall",
    }
    assert fragment["receivers"] == [
        {"name": "oncall", "pagerduty_configs": [{"routing_key": "pd-key"}]},
        {
            "name": "chat",
            "slack_configs": [{"api_url": "https://hooks.example/T0/B0/x", "channel": "#a"}],
        },
    ]
    assert "pd-key" not in yaml.safe_dump(objects["ConfigMap/llamafleet-alerts"].inputs)


def test_with_the_operator_the_alertmanager_config_reads_its_secrets_by_reference() -> None:
    objects = _declare(
        FleetMonitoringArgs(
            namespace="monitoring",
            rules=RULES,
            operator=True,
            receivers=RECEIVERS,
            severities=routes_by_severity(RECEIVERS, {}),
        )
    )
    config = objects["AlertmanagerConfig/llamafleet-alerts"]
    assert "pd-key" not in yaml.safe_dump(config.inputs)
    assert config.inputs["spec"]["receivers"][0] == {
        "name": "oncall",
        "pagerdutyConfigs": [
            {"routingKey": {"name": "llamafleet-alert-receivers", "key": "oncall"}}
        ],
    }
    secret = objects["Secret/llamafleet-alert-receivers"]
    assert is_rpc_secret(secret.inputs["stringData"])
    assert secret.urn in config.depends_on
    assert {k: _plain(v) for k, v in _plain(secret.inputs["stringData"]).items()} == {
        "oncall": "pd-key",
        "chat": "https://hooks.example/T0/B0/x",
    }


def test_a_namespace_made_for_the_rules_is_restricted_and_made_first() -> None:
    objects = _declare(
        FleetMonitoringArgs(
            namespace="fleet-mon", rules=RULES, operator=False, create_namespace=True
        )
    )
    namespace = objects["Namespace/fleet-mon"]
    assert restricted_namespace_labels().items() <= namespace.inputs["metadata"]["labels"].items()
    assert namespace.urn in objects["ConfigMap/llamafleet-alerts"].depends_on


def test_dashboards_are_configmaps_with_or_without_the_operator() -> None:
    for operator in (True, False):
        objects = _declare(
            FleetMonitoringArgs(
                namespace="fleet-mon",
                rules=RULES,
                operator=operator,
                create_namespace=True,
                dashboards=DASHBOARDS,
            )
        )
        dashboard = objects["ConfigMap/llamafleet-a"]
        assert dashboard.inputs["metadata"]["labels"] == {
            "app.kubernetes.io/part-of": "llamafleet",
            "app.kubernetes.io/name": "llamafleet-dashboards",
            "grafana_dashboard": "1",
        }
        assert (
            json.loads(dashboard.inputs["data"][dashboard_file("llamafleet-a")])
            == (DASHBOARDS["llamafleet-a"])
        )
        assert objects["Namespace/fleet-mon"].urn in dashboard.depends_on


def test_without_receivers_nothing_is_routed() -> None:
    objects = _declare(FleetMonitoringArgs(namespace="monitoring", rules=RULES, operator=True))
    assert set(objects) == {"PrometheusRule/llamafleet-alerts"}


def test_kube_prometheus_stack_picks_up_every_rule_and_exports_the_tier_label() -> None:
    assert ClusterAddonsConfig().prometheus == "install"
    values = _prometheus_values()
    assert values["prometheus"]["prometheusSpec"]["ruleSelectorNilUsesHelmValues"] is False
    # The chart joins the list with commas into one --metric-labels-allowlist, as the tests run
    # kube-state-metrics (tests/e2e/test_e2e_kube_state_metrics.py).
    assert values["kube-state-metrics"]["metricLabelsAllowlist"] == [
        "pods=[llamafleet.io/tier,llamafleet.io/model]",
        "deployments=[llamafleet.io/tier,llamafleet.io/model]",
        "nodes=[llamafleet.io/tier]",
    ]
    strategy = values["alertmanager"]["alertmanagerSpec"]["alertmanagerConfigMatcherStrategy"]
    assert strategy == {"type": "None"}


def test_kube_prometheus_stack_runs_grafana_loading_every_labelled_dashboard() -> None:
    grafana = _prometheus_values()["grafana"]
    assert grafana["enabled"] is True
    # Empty: the grafana chart (8.10.x) generates a password and keeps it in its Secret, instead
    # of kube-prometheus-stack's default "prom-operator".
    assert grafana["adminPassword"] == ""
    assert grafana["sidecar"]["dashboards"] == {
        "enabled": True,
        "label": "grafana_dashboard",
        "labelValue": "1",
        "searchNamespace": "ALL",
    }
