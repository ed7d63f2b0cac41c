"""The pod template of one llama-server Deployment, as plain data (no Pulumi).

Kept apart from the component so the pod's shape is testable on its own and the component only
declares resources.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from llamafleet.components.labels import GPU_RESOURCE, GPU_TAINT_KEY, TIER_LABEL
from llamafleet.components.pod_security import container_security_context, pod_security_context
from llamafleet.components.server_args import (
    API_KEY_DIR,
    API_KEY_FILE,
    MODEL_DIR,
    SERVER_PORT,
    ServerOptions,
    server_args,
)
from llamafleet.components.sizing import (
    FETCHER_CPU,
    FETCHER_MEMORY_BYTES,
    GgufFacts,
    GiB,
    MiB,
    PodSizing,
    size_pod,
    startup_failure_threshold,
)

if TYPE_CHECKING:
    # Types only: this module stays importable, and testable, without Pulumi.
    from pulumi import Input

    from llamafleet.components.model_store import ModelStoreConfig

# The store credentials Secret (on-prem) is mounted as an AWS shared credentials file.
STORE_CREDENTIALS_DIR = "/var/run/secrets/llamafleet/model-store"
STORE_CREDENTIALS_KEY = "credentials"
STARTUP_PERIOD_SECONDS = 10
# A request's prompt processing, within its longest time (generation is max_tokens at the
# measured tokens/s).
PROMPT_SECONDS = 10
# Idle this long before SIGTERM: more than cpp-httplib's keep-alive (5 s, the pinned build's
# CPPHTTPLIB_KEEPALIVE_TIMEOUT_SECOND), so no request comes over a connection opened before.
DRAIN_QUIET_SECONDS = 6
# llama-server's exit after SIGTERM (it frees the model).
TERM_SECONDS = 10
# The preStop hook, next to llama-server in the image (images/llama-cpp/llama-drain.c).
DRAIN_COMMAND = "llama-drain"
# The model fetcher serves its metrics (why its attempts fail: llamafleet.modelsync.
# fetch_metrics) on this port, named FETCH_METRICS_PORT_NAME, which the model's PodMonitor
# scrapes while the pod is in Init; and retries a failed fetch, waiting at most
# FETCH_RETRY_SECONDS between attempts, instead of exiting into CrashLoopBackOff.
FETCH_METRICS_PORT = 9102
FETCH_METRICS_PORT_NAME = "fetch-metrics"
FETCH_RETRY_SECONDS = 300


@dataclass(frozen=True)
class PodInputs:
    """Everything the pod template of one llama-server Deployment is made from."""

    # llama-server's options: its argv, serving shape and tier kind.
    server: ServerOptions
    # The model's GGUF facts: sizing and the startup probe's budget.
    facts: GgufFacts
    # The tier the pods run on (node selector on `llamafleet.io/tier`).
    tier_name: str
    # A reference pinned by digest, or LlamaCppImage's output of one.
    image: Input[str]
    # The model-fetcher init container's image (runs `modelsync fetch`).
    fetcher_image: Input[str]
    # Where the fetcher gets the model: the ModelStore's own config.
    store: ModelStoreConfig
    # Name of the Secret (key `keys`) mounted for llama-server's --api-key-file.
    api_key_secret: str
    # Name of the pods' ServiceAccount.
    service_account: str
    # Seconds a load balancer keeps sending to a stopping pod; part of the drain window.
    deregistration_seconds: int
    # Secret in the pods' namespace (key `credentials`, an AWS shared credentials file) the
    # fetcher reads the store with (on-prem); None: the pod's IAM role (IRSA).
    store_credentials_secret: str | None = None
    # Tokens one slot generates a second on the tier (measured): with max_tokens, the longest
    # a request takes.
    tokens_per_second: float = 10.0
    # Requests the autoscaler lets wait per replica: they are drained too.
    queue_per_replica: int = 2

    @property
    def sizing(self) -> PodSizing:
        """The pod's memory, CPU and GPU sizing (`size_pod`)."""
        return size_pod(self.facts, self.server.shape, self.server.tier_kind)

    @property
    def longest_request_seconds(self) -> int:
        """The longest one request takes: its prompt (PROMPT_SECONDS) and max_tokens at
        tokens_per_second, never more than the request timeout (llama-server's --timeout); the
        request timeout where no max_tokens caps generation."""
        return longest_request_seconds(
            self.server.request_timeout_seconds, self.server.max_tokens, self.tokens_per_second
        )

    @property
    def drain_max_seconds(self) -> int:
        """How long the preStop hook waits, after the endpoint is gone, for the requests in the
        pod: those in its slots and those queued behind them (queue_per_replica over the slots,
        one request's time each round), plus DRAIN_QUIET_SECONDS of idle."""
        return drain_max_seconds(
            self.server.shape.parallel, self.queue_per_replica, self.longest_request_seconds
        )

    @property
    def termination_grace_seconds(self) -> int:
        """terminationGracePeriodSeconds: the hook's whole wait (endpoint removal, then the
        drain) and TERM_SECONDS for llama-server to exit after SIGTERM."""
        return termination_grace_seconds(self.deregistration_seconds, self.drain_max_seconds)


# The arithmetic of the three properties above, on plain numbers, so the settings rules can
# bound a placement's grace period before any pod is declared (rules.py, spot tiers).
def longest_request_seconds(
    request_timeout_seconds: int, max_tokens: int | None, tokens_per_second: float
) -> int:
    """Seconds: PROMPT_SECONDS plus `max_tokens` at `tokens_per_second` (rounded up), at most
    `request_timeout_seconds`; the timeout itself where `max_tokens` is None."""
    if max_tokens is None:
        return request_timeout_seconds
    generation = math.ceil(max_tokens / tokens_per_second)
    return min(request_timeout_seconds, PROMPT_SECONDS + generation)


def drain_max_seconds(parallel: int, queue_per_replica: int, longest_request: int) -> int:
    """Seconds: one round of `longest_request` for the `parallel` slots' requests, one more per
    `parallel` queued ones (`queue_per_replica`, rounded up), plus DRAIN_QUIET_SECONDS."""
    rounds = 1 + math.ceil(queue_per_replica / parallel)
    return rounds * longest_request + DRAIN_QUIET_SECONDS


def termination_grace_seconds(deregistration_seconds: int, drain_max: int) -> int:
    """Seconds: the endpoint's removal (`deregistration_seconds`), the drain (`drain_max`) and
    TERM_SECONDS for llama-server's exit."""
    return deregistration_seconds + drain_max + TERM_SECONDS


def pod_labels(instance: str, model: str, tier: str) -> dict[str, str]:
    """The labels of the pods and objects of `instance`: app.kubernetes.io/{name,instance,
    part-of}, the model (`llamafleet.io/model`) and the tier (`llamafleet.io/tier`)."""
    return {
        "app.kubernetes.io/name": "llama-server",
        "app.kubernetes.io/instance": instance,
        "app.kubernetes.io/part-of": "llamafleet",
        "llamafleet.io/model": model,
        TIER_LABEL: tier,
    }


def selector_labels(instance: str) -> dict[str, str]:
    """The labels that select the pods of `instance`: the part of `pod_labels` that names
    neither model nor tier."""
    return {"app.kubernetes.io/name": "llama-server", "app.kubernetes.io/instance": instance}


def pod_spec(inputs: PodInputs, instance: str) -> dict[str, Any]:
    """The PodSpec (API field names) of a llama-server pod of `instance`.

    The model-fetcher init container fills an emptyDir of the GGUF's size x 1.1 + 1 GiB; then
    llama-server runs with requests = limits (Guaranteed QoS), startup, readiness and liveness
    probes on /health, and a preStop hook (llama-drain) that holds SIGTERM back while endpoint
    removal propagates (`deregistration_seconds`), then until the pod is idle, at most
    `drain_max_seconds`; the grace period covers both.
    Pods spread over nodes where they can; GPU pods tolerate the `nvidia.com/gpu` taint.
    """
    gpu = inputs.server.tier_kind == "gpu"
    spec: dict[str, Any] = {
        "serviceAccountName": inputs.service_account,
        "automountServiceAccountToken": False,
        "securityContext": pod_security_context(),
        "nodeSelector": {TIER_LABEL: inputs.tier_name},
        "terminationGracePeriodSeconds": inputs.termination_grace_seconds,
        "topologySpreadConstraints": [
            {
                "maxSkew": 1,
                "topologyKey": "kubernetes.io/hostname",
                "whenUnsatisfiable": "ScheduleAnyway",
                "labelSelector": {"matchLabels": selector_labels(instance)},
            }
        ],
        "initContainers": [_fetcher(inputs)],
        "containers": [_server(inputs)],
        "volumes": [
            {"name": "models", "emptyDir": {"sizeLimit": _quantity(_model_volume_bytes(inputs))}},
            {"name": "api-keys", "secret": {"secretName": inputs.api_key_secret}},
            {"name": "tmp", "emptyDir": {"sizeLimit": "64Mi"}},
        ],
    }
    if inputs.store_credentials_secret:
        spec["volumes"].append(
            {
                "name": "store-credentials",
                "secret": {
                    "secretName": inputs.store_credentials_secret,
                    "items": [{"key": STORE_CREDENTIALS_KEY, "path": STORE_CREDENTIALS_KEY}],
                },
            }
        )
    if gpu:
        spec["tolerations"] = [{"key": GPU_TAINT_KEY, "operator": "Exists", "effect": "NoSchedule"}]
    return spec


def _fetcher(inputs: PodInputs) -> dict[str, Any]:
    """The model-fetcher init container: `modelsync fetch` of the model's files (by digest,
    verified) into the `models` volume; a failed fetch is retried, at most FETCH_RETRY_SECONDS
    apart, and counted by reason on its `fetch-metrics` port until one succeeds."""
    store = inputs.store
    command = [
        "modelsync",
        "fetch",
        *("--store", store.location.url),
        *("--digest", inputs.server.digest),
        *(arg for shard in inputs.server.shard_digests for arg in ("--shard", shard)),
        *(arg for part in inputs.server.part_digests for arg in ("--file", part)),
        *("--cache-dir", MODEL_DIR),
        *("--metrics-port", str(FETCH_METRICS_PORT)),
        *("--retry-seconds", str(FETCH_RETRY_SECONDS)),
    ]
    if store.endpoint_url:
        command += ["--endpoint-url", store.endpoint_url]
    if not store.checksum_headers:
        command += ["--no-checksum-headers"]
    container: dict[str, Any] = {
        "name": "model-fetcher",
        "image": inputs.fetcher_image,
        "command": command,
        "ports": [
            {
                "name": FETCH_METRICS_PORT_NAME,
                "containerPort": FETCH_METRICS_PORT,
                "protocol": "TCP",
            }
        ],
        "env": [{"name": "AWS_REGION", "value": store.region}],
        "resources": _resources(FETCHER_CPU, FETCHER_MEMORY_BYTES),
        "securityContext": container_security_context(),
        "volumeMounts": [
            {"name": "models", "mountPath": MODEL_DIR},
            {"name": "tmp", "mountPath": "/tmp"},  # noqa: S108 (a private emptyDir)
        ],
    }
    if inputs.store_credentials_secret:
        # A file, not environment variables: the keys stay out of the process environment.
        container["env"].append(
            {
                "name": "AWS_SHARED_CREDENTIALS_FILE",
                "value": f"{STORE_CREDENTIALS_DIR}/{STORE_CREDENTIALS_KEY}",
            }
        )
        container["volumeMounts"].append(
            {"name": "store-credentials", "mountPath": STORE_CREDENTIALS_DIR, "readOnly": True}
        )
    return container


def _server(inputs: PodInputs) -> dict[str, Any]:
    sizing = inputs.sizing
    resources = _resources(sizing.cpus, sizing.memory_bytes, sizing.gpus)
    storage = _quantity(_model_volume_bytes(inputs))
    resources["requests"]["ephemeral-storage"] = storage
    resources["limits"]["ephemeral-storage"] = storage
    health = {"httpGet": {"path": "/health", "port": "http"}}
    return {
        "name": "llama-server",
        "image": inputs.image,
        "command": ["llama-server"],
        "args": server_args(inputs.server),
        "ports": [{"name": "http", "containerPort": SERVER_PORT, "protocol": "TCP"}],
        "resources": resources,
        # /health is 503 while the model loads: the startup probe waits for big models.
        "startupProbe": {
            **health,
            "periodSeconds": STARTUP_PERIOD_SECONDS,
            "failureThreshold": startup_failure_threshold(inputs.facts, STARTUP_PERIOD_SECONDS),
        },
        "readinessProbe": {**health, "periodSeconds": 5, "failureThreshold": 2},
        "livenessProbe": {
            **health,
            "periodSeconds": 20,
            "timeoutSeconds": 5,
            "failureThreshold": 3,
        },
        "lifecycle": {"preStop": {"exec": {"command": drain_command(inputs)}}},
        "securityContext": container_security_context(),
        "volumeMounts": [
            {"name": "models", "mountPath": MODEL_DIR, "readOnly": True},
            {"name": "api-keys", "mountPath": API_KEY_DIR, "readOnly": True},
            {"name": "tmp", "mountPath": "/tmp"},  # noqa: S108 (a private emptyDir)
        ],
    }


def drain_command(inputs: PodInputs) -> list[str]:
    """The preStop hook's argv: llama-drain PORT KEY_FILE SETTLE QUIET MAX (seconds; the key is
    read from the mounted file, never passed)."""
    return [
        DRAIN_COMMAND,
        str(SERVER_PORT),
        API_KEY_FILE,
        str(inputs.deregistration_seconds),
        str(DRAIN_QUIET_SECONDS),
        str(inputs.drain_max_seconds),
    ]


def _resources(cpus: int, memory_bytes: int, gpus: int = 0) -> dict[str, dict[str, str]]:
    """Requests equal limits: Guaranteed QoS, and whole CPUs for the static CPU manager."""
    amounts = {"cpu": str(cpus), "memory": _quantity(memory_bytes)}
    if gpus:
        amounts[GPU_RESOURCE] = str(gpus)
    return {"requests": dict(amounts), "limits": dict(amounts)}


def _model_volume_bytes(inputs: PodInputs) -> int:
    # The GGUF plus the fetcher's temporary file while it is verified, with slack.
    return int(inputs.facts.size_bytes * 1.1) + 1 * GiB


def _quantity(size_bytes: int) -> str:
    return f"{math.ceil(size_bytes / MiB)}Mi"
