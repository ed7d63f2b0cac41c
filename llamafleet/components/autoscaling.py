"""Autoscaler specs for a llama-server Deployment, as plain data (no Pulumi).

KEDA scales on the queue (`llamacpp:requests_deferred`): `requests_processing` is capped at the
slot count, so it can never say "more replicas needed". HPA on CPU is the fallback where a
cluster has no KEDA: llama-server's threads are busy exactly when slots are in use.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

QUEUE_METRIC = "llamacpp:requests_deferred"
# KEDA's ownership transfer (apis/keda/v1alpha1/scaledobject_webhook.go, verifyHpas, of the
# pinned KEDA): with it, and horizontalPodAutoscalerConfig.name naming an HPA that already scales
# the workload, the webhook admits the ScaledObject and KEDA takes that HPA over instead of
# denying "already managed by the hpa".
TRANSFER_HPA_OWNERSHIP = "scaledobject.keda.sh/transfer-hpa-ownership"
# Loading a model costs minutes: scale down slowly, one pod at a time.
SCALE_DOWN_WINDOW_SECONDS = 300
CPU_TARGET_PERCENT = 80


@dataclass(frozen=True)
class ScalingRange:
    """Replica bounds and the queue target of one Deployment.

    Attributes:
        min_replicas: Fewest replicas; 0 lets KEDA scale to zero (the HPA fallback and the
            Deployment's initial count use at least 1).
        max_replicas: Most replicas.
        queue_per_replica: Deferred requests (`llamacpp:requests_deferred`) per replica that
            KEDA aims for: its Prometheus trigger's `threshold`, an AverageValue target.
    """

    min_replicas: int
    max_replicas: int
    queue_per_replica: int


# The gateway's per-tier demand (llamafleet_gateway.litellm_plugin): requests in flight at the
# gateway, waiting or served, exported whether or not the tier has pods.
DEMAND_METRIC = "llamafleet_gateway_requests_in_flight"


@dataclass(frozen=True)
class Demand:
    """The gateway's demand for one team's model on one tier: a second KEDA trigger, so the
    tier grows with what the gateway sends it, not only with what its own pods have queued.

    Attributes:
        team: The `team` label of the gateway's metric.
        model: Its `model` label.
        tier: Its `tier` label.
        per_replica: Requests in flight one replica is meant to hold: its slots plus its
            queue target (`parallel` + `queuePerReplica`).
    """

    team: str
    model: str
    tier: str
    per_replica: int

    def query(self) -> str:
        """PromQL: the demand summed over the gateway's replicas."""
        labels = f'team="{self.team}",model="{self.model}",tier="{self.tier}"'
        return f"sum({DEMAND_METRIC}{{{labels}}})"


def _behavior() -> dict[str, Any]:
    return {
        "scaleDown": {
            "stabilizationWindowSeconds": SCALE_DOWN_WINDOW_SECONDS,
            "policies": [{"type": "Pods", "value": 1, "periodSeconds": 120}],
        },
        "scaleUp": {
            "stabilizationWindowSeconds": 0,
            "policies": [{"type": "Pods", "value": 2, "periodSeconds": 60}],
        },
    }


def queue_query(namespace: str, service: str) -> str:
    """PromQL: `llamacpp:requests_deferred` summed over the pods behind Service `service` in
    `namespace` (the `namespace` and `service` target labels that a Prometheus Operator
    ServiceMonitor scrape adds)."""
    return f'sum({QUEUE_METRIC}{{namespace="{namespace}",service="{service}"}})'


def scaled_object_annotations() -> dict[str, str]:
    """A ScaledObject's annotations: it adopts the HPA `hpa_spec` made for its Deployment where a
    cluster switches from `hpa` to `keda` (TRANSFER_HPA_OWNERSHIP), so one `up` switches."""
    return {TRANSFER_HPA_OWNERSHIP: "true"}


def scaled_object_spec(
    deployment: str,
    namespace: str,
    service: str,
    scaling: ScalingRange,
    prometheus_url: str,
    *,
    hpa_name: str,
    demand: Demand | None = None,
) -> dict[str, Any]:
    """The `spec` of a KEDA ScaledObject (keda.sh/v1alpha1) that scales Deployment `deployment`.

    One Prometheus trigger: `queue_query(namespace, service)` against `prometheus_url`, polled
    every 15 s, active above 0. The HPA that KEDA makes is named `hpa_name`, the name the `hpa`
    autoscaler gives its own, so a switch adopts that one (with `scaled_object_annotations`); it
    adds at most 2 pods a minute and removes at most 1 per 2 minutes after a 300 s window;
    `cooldownPeriod` (300 s) is KEDA's wait before scaling to zero. With `demand`, a second
    trigger follows the gateway's requests in flight for the tier (the HPA KEDA makes takes the
    larger of the two counts).
    """
    triggers = [
        _prometheus_trigger(
            prometheus_url, queue_query(namespace, service), scaling.queue_per_replica
        )
    ]
    if demand is not None:
        triggers.append(_prometheus_trigger(prometheus_url, demand.query(), demand.per_replica))
    return {
        "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": deployment},
        "minReplicaCount": scaling.min_replicas,
        "maxReplicaCount": scaling.max_replicas,
        "pollingInterval": 15,
        "cooldownPeriod": SCALE_DOWN_WINDOW_SECONDS,
        "advanced": {"horizontalPodAutoscalerConfig": {"name": hpa_name, "behavior": _behavior()}},
        "triggers": triggers,
    }


def cpu_metric() -> dict[str, Any]:
    """An autoscaling/v2 metric: average CPU use at CPU_TARGET_PERCENT of requests."""
    return {
        "type": "Resource",
        "resource": {
            "name": "cpu",
            "target": {"type": "Utilization", "averageUtilization": CPU_TARGET_PERCENT},
        },
    }


def _prometheus_trigger(prometheus_url: str, query: str, per_replica: int) -> dict[str, Any]:
    """A KEDA Prometheus trigger: `query` averaged to `per_replica` a replica, active above 0."""
    return {
        "type": "prometheus",
        "metricType": "AverageValue",
        "metadata": {
            "serverAddress": prometheus_url,
            "query": query,
            "threshold": str(per_replica),
            "activationThreshold": "0",
        },
    }


def hpa_spec(deployment: str, scaling: ScalingRange) -> dict[str, Any]:
    """The `spec` of an autoscaling/v2 HorizontalPodAutoscaler for `deployment`, where there is
    no KEDA: average CPU use at 80% of requests, `min_replicas` raised to 1 (an HPA cannot
    scale to zero), the same pacing as `scaled_object_spec`."""
    return {
        "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": deployment},
        "minReplicas": max(1, scaling.min_replicas),
        "maxReplicas": scaling.max_replicas,
        "metrics": [cpu_metric()],
        "behavior": _behavior(),
    }
