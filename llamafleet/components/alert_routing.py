"""Who hears the fleet's alerts: Alertmanager receivers from `llamafleet:alerting.receivers`,
routed by severity, as plain data in the two forms a cluster can load.

- Where the Prometheus Operator runs: an `AlertmanagerConfig` (monitoring.coreos.com/v1alpha1)
  whose secrets (webhook URLs, Slack URLs, PagerDuty keys) are read from a Secret by reference.
- Where the cluster has its own Alertmanager: a Secret holding the `route` and `receivers` to
  merge into its alertmanager.yml (Alertmanager's configuration format).

Only llamafleet's alerts are routed (`alertname=~"Llamafleet.*"`), so a shared Alertmanager's
other routes are untouched.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, Final, Literal

from pydantic import Field, SecretStr, model_validator
from pydantic.alias_generators import to_snake

from llamafleet.components.config import ComponentConfig

Severity = Literal["critical", "warning", "info"]
SEVERITIES: Final[tuple[Severity, ...]] = ("critical", "warning", "info")
ALERT_MATCHER: Final = "Llamafleet.*"
# Alerts of one model on one tier are one notification; a new one waits 30 s for its peers.
GROUP_BY: Final = ["alertname", "namespace", "team", "model", "tier"]
GROUP_WAIT: Final = "30s"
REPEAT_INTERVAL: Final = "4h"


class Slack(ComponentConfig):
    """A Slack incoming webhook."""

    api_url: SecretStr = Field(
        description="The incoming webhook's URL (a secret: `pulumi config set --secret --path`)."
    )
    channel: str = Field(min_length=1, max_length=80, description="Channel, e.g. #llm-alerts.")


class PagerDuty(ComponentConfig):
    """A PagerDuty Events API v2 integration."""

    routing_key: SecretStr = Field(min_length=1, description="The integration key (a secret).")


class Webhook(ComponentConfig):
    """Alertmanager's generic webhook (its JSON payload, POSTed)."""

    url: SecretStr = Field(description="Where to POST (a secret: URLs often carry a token).")


class Receiver(ComponentConfig):
    """`llamafleet:alerting.receivers.<name>`: exactly one of slack, pagerduty, webhook."""

    slack: Slack | None = Field(default=None, description="A Slack channel.")
    pagerduty: PagerDuty | None = Field(default=None, description="A PagerDuty service.")
    webhook: Webhook | None = Field(default=None, description="A webhook.")

    @model_validator(mode="after")
    def _exactly_one(self) -> Receiver:
        given = [k for k in ("slack", "pagerduty", "webhook") if getattr(self, k) is not None]
        if len(given) != 1:
            raise ValueError(
                f"give exactly one of slack, pagerduty, webhook (got {', '.join(given) or 'none'})"
            )
        return self

    def secret_value(self) -> str:
        """The receiver's one secret: the Slack or webhook URL, or the PagerDuty key."""
        if self.slack is not None:
            return self.slack.api_url.get_secret_value()
        if self.pagerduty is not None:
            return self.pagerduty.routing_key.get_secret_value()
        assert self.webhook is not None
        return self.webhook.url.get_secret_value()


def routes_by_severity(
    receivers: Mapping[str, Receiver], routes: Mapping[Severity, str]
) -> dict[str, str]:
    """Severity -> receiver name: `routes` as given, and every severity it leaves out to the first
    receiver. Empty where there are no receivers."""
    if not receivers:
        return {}
    first = next(iter(receivers))
    return {s: routes.get(s, first) for s in SEVERITIES}


def _route(
    severities: Mapping[str, str], matchers: list[Any], severity_matcher: Callable[[str], list[Any]]
) -> dict[str, Any]:
    return {
        "receiver": severities["critical"],
        "groupBy": GROUP_BY,
        "groupWait": GROUP_WAIT,
        "repeatInterval": REPEAT_INTERVAL,
        "matchers": matchers,
        "routes": [
            {"receiver": receiver, "matchers": severity_matcher(severity)}
            for severity, receiver in severities.items()
        ],
    }


def operator_config(
    receivers: Mapping[str, Receiver], severities: Mapping[str, str], secret_name: str
) -> dict[str, Any]:
    """The spec of an AlertmanagerConfig: `severities` (routes_by_severity) routed to
    `receivers`, each receiver's secret read from key `<receiver name>` of Secret
    `secret_name` (secret_values)."""

    def matcher(name: str, value: str, match_type: str = "=") -> dict[str, str]:
        return {"name": name, "value": value, "matchType": match_type}

    def receiver(name: str, r: Receiver) -> dict[str, Any]:
        ref = {"name": secret_name, "key": name}
        if r.slack is not None:
            return {"name": name, "slackConfigs": [{"apiURL": ref, "channel": r.slack.channel}]}
        if r.pagerduty is not None:
            return {"name": name, "pagerdutyConfigs": [{"routingKey": ref}]}
        return {"name": name, "webhookConfigs": [{"urlSecret": ref}]}

    def by_severity(severity: str) -> list[Any]:
        return [matcher("severity", severity)]

    route = _route(severities, [matcher("alertname", ALERT_MATCHER, "=~")], by_severity)
    return {
        "route": route,
        "receivers": [receiver(name, r) for name, r in receivers.items()],
    }


def secret_values(receivers: Mapping[str, Receiver]) -> dict[str, str]:
    """Receiver name -> its secret (the Secret an AlertmanagerConfig reads)."""
    return {name: r.secret_value() for name, r in receivers.items()}


def alertmanager_fragment(
    receivers: Mapping[str, Receiver], severities: Mapping[str, str]
) -> dict[str, Any]:
    """The `route` (a child route for the top-level one) and `receivers` to merge into a
    cluster's own alertmanager.yml, secrets inline (it goes into a Secret)."""

    def receiver(name: str, r: Receiver) -> dict[str, Any]:
        if r.slack is not None:
            slack = {"api_url": r.secret_value(), "channel": r.slack.channel}
            return {"name": name, "slack_configs": [slack]}
        if r.pagerduty is not None:
            return {"name": name, "pagerduty_configs": [{"routing_key": r.secret_value()}]}
        return {"name": name, "webhook_configs": [{"url": r.secret_value()}]}

    def by_severity(severity: str) -> list[Any]:
        return [f'severity="{severity}"']

    route = _route(severities, [f'alertname=~"{ALERT_MATCHER}"'], by_severity)
    # alertmanager.yml names the route's fields in snake case (group_by, group_wait, ...).
    return {
        "route": {to_snake(key): value for key, value in route.items()},
        "receivers": [receiver(name, r) for name, r in receivers.items()],
    }
