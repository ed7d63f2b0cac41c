"""The metric names alerts, dashboards, autoscalers and `llamafleet status` query: one definition
each. Every name here is exported by a pinned binary: tests list them by running llama-server,
the gateway and kube-state-metrics, and fail on a name that is not there.

Target labels: a Prometheus Operator ServiceMonitor scrape adds `namespace`, `service` and `pod`
(the native Prometheus of `make up` sets the same ones), so one query works on every cluster.
"""

from __future__ import annotations

from typing import Final

# llama-server with --metrics (tools/server/server.cpp of the pinned build).
# Requests waiting for a slot: the queue KEDA scales on. `requests_processing` is capped at the
# slot count, so it can never say "more replicas needed".
QUEUE: Final = "llamacpp:requests_deferred"
PROCESSING: Final = "llamacpp:requests_processing"
TOKENS_PREDICTED: Final = "llamacpp:tokens_predicted_total"
PROMPT_TOKENS: Final = "llamacpp:prompt_tokens_total"

# The gateway's plugin (llamafleet_gateway.litellm_plugin; prometheus_client adds `_total` to a
# counter's name). Labels: team, model, tier, and outcome / kind / reason.
GATEWAY_REQUESTS: Final = "llamafleet_gateway_requests_total"
GATEWAY_TOKENS: Final = "llamafleet_gateway_tokens_total"
GATEWAY_SPILLS: Final = "llamafleet_gateway_spills_total"
GATEWAY_REJECTED: Final = "llamafleet_gateway_rejected_total"
# Requests in flight per team, model and tier (waiting or served), exported whether or not the
# tier has pods: the demand KEDA scales on.
DEMAND: Final = "llamafleet_gateway_requests_in_flight"

# kube-state-metrics (the release kube-prometheus-stack's pinned chart deploys). Pod labels appear
# on kube_pod_labels only where --metric-labels-allowlist lets them through, as label_<name> with
# every character outside [a-zA-Z0-9_] replaced by `_`.
DEPLOYMENT_SPEC_REPLICAS: Final = "kube_deployment_spec_replicas"
DEPLOYMENT_AVAILABLE: Final = "kube_deployment_status_replicas_available"
POD_PHASE: Final = "kube_pod_status_phase"
POD_LABELS: Final = "kube_pod_labels"


def label_metric_name(kubernetes_label: str) -> str:
    """The label kube-state-metrics gives a Kubernetes label on kube_pod_labels, e.g.
    `llamafleet.io/tier` -> `label_llamafleet_io_tier`."""
    return "label_" + "".join(c if c.isalnum() or c == "_" else "_" for c in kubernetes_label)
