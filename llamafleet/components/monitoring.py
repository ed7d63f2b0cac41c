"""FleetMonitoring: the fleet's alerts and who hears them, and its Grafana dashboards, on one
cluster, in the form its Prometheus and Grafana load.

- `operator` (the Prometheus Operator runs there: kube-prometheus-stack, or a cluster's own
  operator): a PrometheusRule, and with receivers an AlertmanagerConfig reading its secrets
  from a Secret.
- otherwise: a ConfigMap holding the rule file (key RULES_FILE), for a Prometheus of the
  cluster's own to mount or sync, and with receivers a Secret holding the route and receivers to
  merge into its alertmanager.yml. `make up`'s native Prometheus loads this ConfigMap.
- either way: one ConfigMap per dashboard (its JSON model under `<uid>.json`), labelled
  DASHBOARD_LABEL: kube-prometheus-stack's Grafana loads it through its dashboards sidecar, and a
  Grafana of the cluster's own can mount it as a provisioned dashboards folder.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, Final

import pulumi
import pulumi_kubernetes as k8s
import yaml

from llamafleet.components.alert_routing import (
    Receiver,
    alertmanager_fragment,
    operator_config,
    secret_values,
)
from llamafleet.components.labels import DASHBOARD_LABEL, DASHBOARD_LABEL_VALUE
from llamafleet.components.manifest import manifest
from llamafleet.components.pod_security import restricted_namespace_labels

NAME: Final = "llamafleet-alerts"
RULES_FILE: Final = "llamafleet-rules.yaml"
RECEIVERS_SECRET: Final = "llamafleet-alert-receivers"  # noqa: S105 (a Secret's name)
ALERTMANAGER_FILE: Final = "alertmanager-llamafleet.yaml"
LABELS: Final = {"app.kubernetes.io/part-of": "llamafleet", "app.kubernetes.io/name": NAME}
DASHBOARD_LABELS: Final = {
    "app.kubernetes.io/part-of": "llamafleet",
    "app.kubernetes.io/name": "llamafleet-dashboards",
    DASHBOARD_LABEL: DASHBOARD_LABEL_VALUE,
}


@dataclass(frozen=True)
class FleetMonitoringArgs:
    """What one cluster's Prometheus and Alertmanager get.

    Attributes:
        namespace: The monitoring namespace (it must exist: the Prometheus' own, or one the
            stack makes).
        rules: A Prometheus rule file (llamafleet.monitoring.alerts.rule_file).
        operator: The Prometheus Operator's CRDs are there (PrometheusRule, AlertmanagerConfig).
        receivers: Alertmanager receivers by name; empty: the alerts notify no one.
        severities: Severity -> receiver name (llamafleet.components.alert_routing.
            routes_by_severity).
        create_namespace: Make `namespace` (with the restricted Pod Security labels): a
            cluster with no Prometheus of its own, whose rules a Prometheus outside it reads.
        dashboards: Grafana dashboards' JSON models by uid
            (llamafleet.monitoring.dashboards.fleet_dashboards); each becomes the ConfigMap of
            that name.
    """

    namespace: str
    rules: dict[str, Any]
    operator: bool
    receivers: dict[str, Receiver] = field(default_factory=dict[str, Receiver])
    severities: dict[str, str] = field(default_factory=dict[str, str])
    create_namespace: bool = False
    dashboards: dict[str, dict[str, Any]] = field(default_factory=dict[str, dict[str, Any]])


class FleetMonitoring(pulumi.ComponentResource):
    """The alerts and dashboards of one cluster (see the module). Receivers' secrets go only
    into Secrets, marked secret in the state."""

    def __init__(
        self, name: str, args: FleetMonitoringArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__("llamafleet:monitoring:FleetMonitoring", name, None, opts)
        self._name = name
        self._args = args
        self._inside = pulumi.ResourceOptions(parent=self)
        if args.create_namespace:
            namespace = k8s.core.v1.Namespace(
                f"{name}-namespace",
                metadata=manifest(
                    {
                        "name": args.namespace,
                        "labels": {**LABELS, **restricted_namespace_labels()},
                    }
                ),
                opts=self._inside,
            )
            self._inside = pulumi.ResourceOptions(parent=self, depends_on=[namespace])
        if args.operator:
            self._operator()
        else:
            self._files()
        self._dashboards()
        self.register_outputs({})

    def _meta(self, object_name: str) -> Any:
        return manifest(
            {"name": object_name, "namespace": self._args.namespace, "labels": dict(LABELS)}
        )

    def _operator(self) -> None:
        k8s.apiextensions.CustomResource(
            f"{self._name}-rules",
            api_version="monitoring.coreos.com/v1",
            kind="PrometheusRule",
            metadata=self._meta(NAME),
            spec=self._args.rules,
            opts=self._inside,
        )
        if not self._args.receivers:
            return
        secret = self._secret(
            {k: pulumi.Output.secret(v) for k, v in secret_values(self._args.receivers).items()}
        )
        k8s.apiextensions.CustomResource(
            f"{self._name}-alertmanager-config",
            api_version="monitoring.coreos.com/v1alpha1",
            kind="AlertmanagerConfig",
            metadata=self._meta(NAME),
            spec=operator_config(self._args.receivers, self._args.severities, RECEIVERS_SECRET),
            opts=pulumi.ResourceOptions.merge(
                self._inside, pulumi.ResourceOptions(depends_on=[secret])
            ),
        )

    def _files(self) -> None:
        k8s.core.v1.ConfigMap(
            f"{self._name}-rules",
            metadata=self._meta(NAME),
            data={RULES_FILE: yaml.safe_dump(self._args.rules, sort_keys=False)},
            opts=self._inside,
        )
        if self._args.receivers:
            fragment = alertmanager_fragment(self._args.receivers, self._args.severities)
            self._secret(
                {ALERTMANAGER_FILE: pulumi.Output.secret(yaml.safe_dump(fragment, sort_keys=False))}
            )

    def _dashboards(self) -> None:
        for uid, model in self._args.dashboards.items():
            k8s.core.v1.ConfigMap(
                f"{self._name}-dashboard-{uid}",
                metadata=manifest(
                    {"name": uid, "namespace": self._args.namespace, "labels": DASHBOARD_LABELS}
                ),
                data={dashboard_file(uid): json.dumps(model, sort_keys=True)},
                opts=self._inside,
            )

    def _secret(self, data: dict[str, pulumi.Output[str]]) -> k8s.core.v1.Secret:
        return k8s.core.v1.Secret(
            f"{self._name}-receivers",
            metadata=self._meta(RECEIVERS_SECRET),
            string_data=data,
            opts=pulumi.ResourceOptions.merge(
                self._inside, pulumi.ResourceOptions(additional_secret_outputs=["stringData"])
            ),
        )


def dashboard_file(uid: str) -> str:
    """The key of dashboard `uid`'s JSON model in its ConfigMap (the file Grafana reads)."""
    return f"{uid}.json"
