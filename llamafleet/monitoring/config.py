"""`llamafleet:alerting`: the alerts' durations and thresholds, where their runbooks live, and who
is told (Alertmanager receivers, routed by severity)."""

from __future__ import annotations

from pydantic import AnyHttpUrl, Field, model_validator

from llamafleet.components.alert_routing import Receiver, Severity
from llamafleet.components.config import ComponentConfig, KubernetesName
from llamafleet.monitoring.alerts import AlertsConfig


class SeverityRoutes(ComponentConfig):
    """`llamafleet:alerting.routes`: the receiver of each severity; one left out goes to the
    first receiver."""

    critical: KubernetesName | None = Field(default=None, description="Who gets critical.")
    warning: KubernetesName | None = Field(default=None, description="Who gets warning.")
    info: KubernetesName | None = Field(default=None, description="Who gets info.")

    def given(self) -> dict[Severity, str]:
        """Severity -> receiver, for the severities given."""
        routes: dict[Severity, str | None] = {
            "critical": self.critical,
            "warning": self.warning,
            "info": self.info,
        }
        return {severity: name for severity, name in routes.items() if name is not None}


class AlertingConfig(ComponentConfig):
    """`llamafleet:alerting`: alerts, runbooks and receivers. Without receivers the alerts still
    fire (Prometheus' alerts page, `llamafleet status`) but notify no one."""

    alerts: AlertsConfig = Field(
        default_factory=AlertsConfig, description="Durations and thresholds."
    )
    runbook_url: AnyHttpUrl | None = Field(
        default=None,
        description="Where docs/runbooks.md is published (each alert links to its section); "
        "absent: the alerts carry their one-line runbook only.",
    )
    receivers: dict[KubernetesName, Receiver] = Field(
        default_factory=dict[str, Receiver],
        description="Alertmanager receivers by name: slack, pagerduty or webhook.",
    )
    routes: SeverityRoutes = Field(
        default_factory=SeverityRoutes,
        description="Severity (critical, warning, info) -> receiver; a severity left out goes "
        "to the first receiver.",
    )

    @model_validator(mode="after")
    def _routes_to_known_receivers(self) -> AlertingConfig:
        given = self.routes.given().values()
        unknown = sorted({name for name in given if name not in self.receivers})
        if unknown:
            known = ", ".join(self.receivers) or "none"
            raise ValueError(
                f"routes name receiver(s) {', '.join(unknown)}, not in receivers ({known})"
            )
        return self
