"""The metric names alerts, dashboards, autoscalers and `llamafleet status` query: one definition
each, grouped by the pinned binary that exports it (EXPORTERS). Tests list what each binary
really exports by running it (llama-server and the gateway after traffic in tests/image,
kube-state-metrics against the local control plane in tests/e2e, node_exporter on loopback in
tests/monitoring, the model fetcher against dead and wrong stores in tests/modelsync) and fail on
a name here that it does not export.

Target labels: a Prometheus Operator ServiceMonitor scrape adds `namespace`, `service` and `pod`
(the native Prometheus of `make up` sets the same ones), so one query works on every cluster; a
PodMonitor scrape (the model fetcher's) adds `namespace`, `pod` and `container`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Final

# llama-server with --metrics (tools/server/server-task.cpp of the pinned build,
# server_task_result_metrics::to_metrics). Requests waiting for a slot: the queue KEDA scales on.
# `requests_processing` (busy slots) is capped at the slot count, so it can never say "more
# replicas needed".
QUEUE: Final = "llamacpp:requests_deferred"
PROCESSING: Final = "llamacpp:requests_processing"
TOKENS_PREDICTED: Final = "llamacpp:tokens_predicted_total"
PROMPT_TOKENS: Final = "llamacpp:prompt_tokens_total"
# Seconds spent on prompts and on generating, summed over requests (each slot adds its own time
# when it finishes one): no time-to-first-token histogram exists, so dashboards divide these.
PROMPT_SECONDS: Final = "llamacpp:prompt_seconds_total"
PREDICTED_SECONDS: Final = "llamacpp:tokens_predicted_seconds_total"

# The gateway's plugin (llamafleet_gateway.litellm_plugin; prometheus_client adds `_total` to a
# counter's name). Labels: team, model, tier, and outcome / kind / reason.
GATEWAY_REQUESTS: Final = "llamafleet_gateway_requests_total"
GATEWAY_TOKENS: Final = "llamafleet_gateway_tokens_total"
GATEWAY_SPILLS: Final = "llamafleet_gateway_spills_total"
GATEWAY_REJECTED: Final = "llamafleet_gateway_rejected_total"
# Requests in flight per team, model and tier (waiting or served), exported whether or not the
# tier has pods: the demand KEDA scales on.
DEMAND: Final = "llamafleet_gateway_requests_in_flight"

# kube-state-metrics (the release kube-prometheus-stack's pinned chart deploys). Kubernetes labels
# appear on the *_labels metrics only where --metric-labels-allowlist lets them through
# (llamafleet.components.cluster_addons.KSM_LABELS_ALLOWLIST), as label_<name> with every
# character outside [a-zA-Z0-9_] replaced by `_`; resource names likewise (nvidia.com/gpu ->
# nvidia_com_gpu).
DEPLOYMENT_SPEC_REPLICAS: Final = "kube_deployment_spec_replicas"
DEPLOYMENT_AVAILABLE: Final = "kube_deployment_status_replicas_available"
DEPLOYMENT_LABELS: Final = "kube_deployment_labels"
POD_PHASE: Final = "kube_pod_status_phase"
# 1 for a pod the scheduler found no node for (its PodScheduled condition Unschedulable).
POD_UNSCHEDULABLE: Final = "kube_pod_status_unschedulable"
POD_LABELS: Final = "kube_pod_labels"
# One series per pod with its `node`: maps node_exporter's pod to the node it runs on.
POD_INFO: Final = "kube_pod_info"
POD_REQUESTS: Final = "kube_pod_container_resource_requests"
NODE_ALLOCATABLE: Final = "kube_node_status_allocatable"
NODE_LABELS: Final = "kube_node_labels"

# node_exporter (the release kube-prometheus-stack's pinned chart deploys, one per node).
NODE_CPU_SECONDS: Final = "node_cpu_seconds_total"
NODE_MEMORY_AVAILABLE: Final = "node_memory_MemAvailable_bytes"
NODE_MEMORY_TOTAL: Final = "node_memory_MemTotal_bytes"

# The model-fetcher init container (`modelsync fetch --metrics-port`, llamafleet.modelsync.
# fetch_metrics), scraped by a PodMonitor while the pod is in Init: failed attempts by `reason`
# (store_unreachable, digest_mismatch, not_found, access_denied, other), each from 0.
MODEL_FETCH_FAILURES: Final = "llamafleet_model_fetch_failures_total"
MODEL_FETCH_LAST_ATTEMPT_FAILED: Final = "llamafleet_model_fetch_last_attempt_failed"
MODEL_FETCH_IN_PROGRESS: Final = "llamafleet_model_fetch_in_progress"

# Which pinned binary exports each name above: the tests of each binary check its own set.
EXPORTERS: Final[Mapping[str, frozenset[str]]] = {
    "llama-server": frozenset(
        {QUEUE, PROCESSING, TOKENS_PREDICTED, PROMPT_TOKENS, PROMPT_SECONDS, PREDICTED_SECONDS}
    ),
    "gateway": frozenset(
        {GATEWAY_REQUESTS, GATEWAY_TOKENS, GATEWAY_SPILLS, GATEWAY_REJECTED, DEMAND}
    ),
    "kube-state-metrics": frozenset(
        {
            DEPLOYMENT_SPEC_REPLICAS,
            DEPLOYMENT_AVAILABLE,
            DEPLOYMENT_LABELS,
            POD_PHASE,
            POD_UNSCHEDULABLE,
            POD_LABELS,
            POD_INFO,
            POD_REQUESTS,
            NODE_ALLOCATABLE,
            NODE_LABELS,
        }
    ),
    "node_exporter": frozenset({NODE_CPU_SECONDS, NODE_MEMORY_AVAILABLE, NODE_MEMORY_TOTAL}),
    "model-fetcher": frozenset(
        {MODEL_FETCH_FAILURES, MODEL_FETCH_LAST_ATTEMPT_FAILED, MODEL_FETCH_IN_PROGRESS}
    ),
}


def label_metric_name(kubernetes_name: str) -> str:
    """The name kube-state-metrics gives a Kubernetes label on its *_labels metrics, e.g.
    `llamafleet.io/tier` -> `label_llamafleet_io_tier`."""
    return "label_" + sanitized(kubernetes_name)


def sanitized(kubernetes_name: str) -> str:
    """A Kubernetes name as kube-state-metrics writes it in a label value or name: every
    character outside [a-zA-Z0-9_] replaced by `_` (`nvidia.com/gpu` -> `nvidia_com_gpu`)."""
    return "".join(c if c.isalnum() or c == "_" else "_" for c in kubernetes_name)
