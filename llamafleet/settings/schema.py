"""The typed shape of a stack's `llamafleet:*` settings.

Each field carries its description; YAML keys are camelCase like every Pulumi setting. Unknown
keys are errors. Rules that span several fields live in `llamafleet.settings.rules`.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal, cast

from pydantic import (
    Field,
    PlainValidator,
    SecretStr,
    StringConstraints,
    ValidationInfo,
    field_validator,
    model_validator,
)

from llamafleet.components.cluster_addons import ClusterAddonsConfig
from llamafleet.components.config import ComponentConfig, ServiceUrl
from llamafleet.components.gateway import GatewayConfig
from llamafleet.components.llama_cpp_image import ImageBuildConfig
from llamafleet.components.model_sources import (
    SETTINGS_RELATIVE_FIX,
    part_source_problem,
    settings_source_problem,
)
from llamafleet.components.model_store import ModelStoreConfig
from llamafleet.components.server_args import (
    BuiltinChatTemplate,
    EmbeddingsConfig,
    SamplingDefaults,
)
from llamafleet.components.sizing import QUANTISED_KV_BLOCK
from llamafleet.components.tenant import TenantConfig, TenantQuota
from llamafleet.monitoring.config import AlertingConfig
from llamafleet.settings.cluster import (
    EksSettings,
    LoadBalancerSettings,
    OnPremSettings,
)
from llamafleet.settings.types import Digest, ImageRef, IsaLevel, Name

# Settings follow the component configs' conventions (camelCase keys, unknown keys refused).
Strict = ComponentConfig


class Range(Strict):
    """A count range, min to max, min not above max:
    `llamafleet:clusters.<name>.tiers.<tier>.nodes` and `llamafleet:models.<name>.replicas`.

    Raises:
        ValueError: min exceeds max (pydantic reports it at the range's key path).
    """

    min: int = Field(ge=0, description="Lower bound.")
    max: int = Field(ge=1, description="Upper bound.")

    @model_validator(mode="after")
    def _ordered(self) -> Range:
        if self.min > self.max:
            raise ValueError(f"min ({self.min}) must not exceed max ({self.max})")
        return self


class Gpu(Strict):
    """`llamafleet:clusters.<name>.tiers.<tier>.gpu`: the GPUs of one node of a gpu tier."""

    type: str = Field(description="GPU model, e.g. nvidia-l4, nvidia-a10g, nvidia-h100.")
    count: int = Field(ge=1, le=16, description="GPUs per node.")
    memory_gib: float = Field(gt=0, description="Memory of one GPU, GiB.")


InstanceType = Annotated[str, StringConstraints(pattern=r"^[a-z][a-z0-9-]*\.[a-z0-9]+$")]
NodeName = Annotated[
    str, StringConstraints(pattern=r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$", max_length=253)
]


class Tier(Strict):
    """`llamafleet:clusters.<name>.tiers.<tier>`: a tier of like nodes: CPU level, node shape and
    count; instance types on EKS, node names on-prem. Tier names are unique in a stack."""

    kind: Literal["cpu", "gpu"] = Field(description="cpu, or gpu for NVIDIA nodes.")

    isa: IsaLevel = Field(description="Newest x86 level every node of the tier supports.")
    cpus_per_node: float = Field(gt=0, description="CPUs of one node.")
    memory_per_node_gib: float = Field(gt=0, description="Memory of one node, GiB.")
    nodes: Range = Field(description="Node count range (fixed on-prem: min = max).")
    gpu: Gpu | None = Field(default=None, description="GPUs of one node (gpu tiers only).")
    instance_types: list[InstanceType] = Field(
        default_factory=list[str],
        description="EKS: EC2 instance types of the tier's node group, all of one shape.",
    )
    capacity_type: Literal["on-demand", "spot"] = Field(
        default="on-demand", description="EKS: on-demand, or spot (cheaper, can be reclaimed)."
    )
    desired_nodes: int | None = Field(
        default=None,
        ge=0,
        description="EKS: nodes at creation (default: nodes.min); the autoscaler owns it after.",
    )
    node_names: list[NodeName] = Field(
        default_factory=list[str],
        description="On-prem: the nodes that form the tier (labelled by the stack).",
    )
    former_name: Name | None = Field(
        default=None,
        description="The name this tier had before a rename: its resources carry Pulumi "
        "aliases, so what can be kept is kept (README: renames).",
    )


NonEmpty = Annotated[str, StringConstraints(min_length=1, max_length=4096)]


class Kubeconfig(Strict):
    """`llamafleet:clusters.<name>.kubeconfig`: how the program reaches an existing cluster."""

    path: NonEmpty | None = Field(
        default=None, description="Kubeconfig file; default: $KUBECONFIG."
    )
    context: NonEmpty | None = Field(default=None, description="Context in that file.")


class Cluster(Strict):
    """`llamafleet:clusters.<name>`: one cluster, existing (reached by kubeconfig) or EKS (created
    by the stack), with its node tiers, autoscaling, monitoring and add-ons."""

    kind: Literal["existing", "eks"] = Field(
        description="existing: reached by kubeconfig; eks: created by the stack."
    )
    kubeconfig: Kubeconfig = Field(default_factory=Kubeconfig, description="How to reach it.")
    autoscaler: Literal["keda", "hpa"] = Field(
        default="keda",
        description="keda scales on the llama-server queue; hpa (CPU) where KEDA is absent.",
    )
    prometheus_url: ServiceUrl = Field(
        default="http://prometheus-operated.monitoring.svc:9090",
        description="Prometheus that scrapes llama-server and that KEDA queries.",
    )
    monitoring_namespace: Name = Field(
        default="monitoring", description="Namespace of the Prometheus that scrapes /metrics."
    )
    service_monitors: bool = Field(
        default=True,
        description="Emit Prometheus Operator ServiceMonitors (and the model fetchers' "
        "PodMonitors).",
    )
    create_monitoring_namespace: bool = Field(
        default=False,
        description="The stack makes monitoringNamespace, to hold the alert rules: for a "
        "cluster with no Prometheus of its own whose rules a Prometheus outside it reads (local: "
        "`make up`'s). Not with addons.prometheus install (its chart makes the namespace).",
    )
    tiers: dict[Name, Tier] = Field(min_length=1, description="Node tiers by name.")
    eks: EksSettings | None = Field(
        default=None, description="kind eks: VPC, control plane and node settings."
    )
    onprem: OnPremSettings | None = Field(
        default=None,
        description="kind existing: tier labels on named nodes, node feature discovery, MetalLB.",
    )
    addons: ClusterAddonsConfig | None = Field(
        default=None, description="Helm add-ons the stack installs; absent: none."
    )
    load_balancer: LoadBalancerSettings = Field(
        default_factory=LoadBalancerSettings,
        description="How the gateway's Service is exposed.",
    )


class StoreCredentials(Strict):
    """The key pair model fetchers read the store with (an S3-compatible store on-prem). Set the
    secret half with `pulumi config set --secret --path
    'llamafleet:modelStore.credentials.secretAccessKey' <key>`; a plain value is refused unless the
    store is on loopback (the `local` stack's moto takes any key)."""

    access_key_id: Annotated[
        str, StringConstraints(pattern=r"^[!-~]+$", min_length=3, max_length=128)
    ] = Field(description="AWS-style access key id (read-only access to the bucket is enough).")
    secret_access_key: SecretStr = Field(
        min_length=1, description="Its secret key; encrypted in the stack file."
    )


class ModelStoreSettings(ModelStoreConfig):
    """The store's component config (`llamafleet.components.model_store.ModelStoreConfig`) plus how
    the fetchers in the team namespaces read it."""

    credentials_secret: Name | None = Field(
        default=None,
        description="Secret in each team namespace, key `credentials`: an AWS shared "
        "credentials file the fetchers read the store with (on-prem); the stack declares it "
        "from `credentials`, or an operator made it. Default: the pod's IAM role.",
    )
    credentials: StoreCredentials | None = Field(
        default=None,
        description="Read-only key pair the stack puts in credentialsSecret (absent: that "
        "Secret is made outside the stack).",
    )
    endpoint_port: Any = Field(
        default=None,
        description="No longer used: the port comes from endpointUrl.",
        exclude=True,
    )

    @field_validator("endpoint_port")
    @classmethod
    def _no_longer_used(cls, value: Any) -> None:
        if value is not None:
            raise ValueError(
                "is no longer used: the store's port comes from endpointUrl "
                "(http(s)://HOST[:PORT]); remove this key"
            )


class Images(Strict):
    """Either `build` (LlamaCppImage builds and pushes; pods run what it pushed, by digest) or
    references already pinned by digest."""

    build: ImageBuildConfig | None = Field(
        default=None, description="Build and push with the stack (LlamaCppImage's config)."
    )
    cpu: ImageRef | None = Field(default=None, description="llama-server CPU image, by digest.")
    cuda: ImageRef | None = Field(default=None, description="CUDA image, pinned by digest.")
    fetcher: ImageRef | None = Field(default=None, description="Model-fetcher image, by digest.")
    gateway: ImageRef | None = Field(
        default=None, description="Gateway image (images/gateway: LiteLLM), by digest."
    )
    redis: ImageRef | None = Field(
        default=None, description="The gateway's Redis image (images/redis), by digest."
    )


class Serving(Strict):
    """`llamafleet:serving`: fleet-wide serving defaults: request timeout, drain window and the
    namespace whose pods may call the models."""

    request_timeout_seconds: int = Field(
        default=300, ge=10, le=3600, description="Longest request; also the drain window."
    )
    deregistration_seconds: int = Field(
        default=15,
        ge=0,
        le=120,
        description="Time for endpoints and load balancers to stop sending to a stopping pod.",
    )
    gateway_namespace: Name = Field(
        default="llamafleet-gateway",
        description="The gateway's namespace: its pods are the only ones that may call models.",
    )
    gateway: GatewayConfig = Field(
        default_factory=GatewayConfig, description="The gateway's replicas and size."
    )
    wake_seconds: int = Field(
        default=300,
        ge=10,
        le=3600,
        description="How long the gateway holds a request for a tier at zero replicas "
        "(`replicas.min: 0`) while it wakes (KEDA sees the held request as demand; a node "
        "may have to start and the model to load), before the next tier or an error.",
    )


MAX_KV_HEADS = 4096


def _kv_head_count(item: object) -> int | None:
    if isinstance(item, bool) or not isinstance(item, int):
        return None
    return item if 0 <= item <= MAX_KV_HEADS else None


def _kv_heads(value: object) -> int | list[int]:
    """One KV-head count or a list of them, each 0..MAX_KV_HEADS, with one message for any fault
    (a union type would report each of its branches).

    Raises:
        ValueError: a value or an entry is not such a count.
    """
    if isinstance(value, list):
        counts = [_kv_head_count(item) for item in cast(list[object], value)]
        if None in counts:
            bad = counts.index(None)
            raise ValueError(
                f"entry {bad} should be a count 0-{MAX_KV_HEADS} "
                f"(got {cast(list[object], value)[bad]!r})"
            )
        return [count for count in counts if count is not None]
    count = _kv_head_count(value)
    if count is None:
        raise ValueError(
            f"should be a count 0-{MAX_KV_HEADS} or a list of per-layer counts (got {value!r})"
        )
    return count


class GgufMetadata(Strict):
    """As printed by `llamafleet models inspect --json` (its `gguf` block)."""

    architecture: Annotated[str, StringConstraints(pattern=r"^[a-z0-9][a-z0-9_.-]{0,63}$")] = Field(
        description="general.architecture, e.g. llama, gemma3."
    )
    file_type: Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_]{1,32}$")] = Field(
        description="Quantisation, e.g. Q4_K_M."
    )
    context_length: int = Field(ge=1, description="Trained context length.")
    block_count: int = Field(ge=1, le=4096, description="Layers.")
    head_count_kv: Annotated[
        int | list[int],
        PlainValidator(_kv_heads, json_schema_input_type=int | list[int]),
    ] = Field(
        description="KV heads (0-4096): one count, or one per layer (0 on recurrent or "
        "convolution layers, which hold no KV cache)."
    )
    key_length: int = Field(ge=1, description="Per-head key size.")
    value_length: int = Field(ge=1, description="Per-head value size.")
    vocab_size: int = Field(ge=1, description="Tokens in the vocabulary.")
    sliding_window: int | None = Field(
        default=None, ge=1, description="Tokens a sliding-window layer attends to."
    )
    sliding_window_pattern: list[bool] | None = Field(
        default=None,
        description="Per layer, whether it uses the sliding window (inspect resolves the "
        "pinned build's pattern); absent: every layer is sized for the whole context.",
    )
    split_count: int | None = Field(
        default=None,
        ge=2,
        le=99999,
        description="split.count of a split model (llama-gguf-split's shards; inspect prints "
        "it for shard 1): the model's `shards` pin the other split.count - 1 files.",
    )

    @model_validator(mode="after")
    def _one_entry_per_layer(self) -> GgufMetadata:
        layers = self.block_count
        if isinstance(self.head_count_kv, list) and len(self.head_count_kv) != layers:
            raise ValueError(
                f"headCountKv has {len(self.head_count_kv)} entries but blockCount is {layers}"
            )
        pattern = self.sliding_window_pattern
        if pattern is not None and len(pattern) != layers:
            raise ValueError(
                f"slidingWindowPattern has {len(pattern)} entries but blockCount is {layers}"
            )
        if pattern is not None and self.sliding_window is None:
            raise ValueError("slidingWindowPattern needs slidingWindow (the window's tokens)")
        return self


class ModelFile(Strict):
    """Another file of a model, pinned as `llamafleet models inspect --json --digest` prints
    it."""

    digest: Digest = Field(description="sha256 of the file, as stored.")
    size_bytes: int = Field(ge=1, description="Size of the file in bytes.")


class ModelPart(ModelFile):
    """A file the model is served with (an adapter, a projector), pinned like its other files."""

    source: str | None = Field(
        default=None,
        description="Where `pulumi up` syncs it from, with the model: an absolute path or one "
        "under ~/ (given exactly when the model has a `source`).",
    )

    @field_validator("source")
    @classmethod
    def _file_source(cls, source: str | None) -> str | None:
        problem = None if source is None else part_source_problem(source, SETTINGS_RELATIVE_FIX)
        if problem is not None:
            raise ValueError(problem)
        return source


class Adapter(ModelPart):
    """`models.<name>.adapters[K]`: a LoRA adapter GGUF (llama-server --lora, or --lora-scaled
    FILE:SCALE when `scale` is not 1), for the model's architecture; `llamafleet models inspect
    --json --digest` on it prints `digest` and `sizeBytes`."""

    scale: float = Field(
        default=1.0,
        gt=0,
        le=100,
        allow_inf_nan=False,
        description="How strongly the adapter applies (--lora-scaled FILE:SCALE; 1: --lora).",
    )


class Projector(ModelPart):
    """`models.<name>.projector`: a multimodal projector GGUF (llama-server --mmproj), the
    model's vision or audio encoder, as `llamafleet models inspect --json --digest` pins it."""


class Model(Strict):
    """`llamafleet:models.<name>`: one GGUF model: its files, pinned by digest, the tiers that
    serve it, and how each replica serves it (slots, context, CPUs, caches, replicas)."""

    digest: Digest = Field(
        description="sha256 of the GGUF file (of shard 1 for a split model), as stored."
    )

    size_bytes: int = Field(ge=1, description="Size of the GGUF file (of shard 1), bytes.")
    shards: list[ModelFile] = Field(
        default_factory=list[ModelFile],
        description="A split model's shards 2..N in order (llama-gguf-split's "
        "-0000K-of-0000N.gguf files), as inspect prints them for shard 1; `source` names shard "
        "1 and the others are synced from beside it. Pods fetch each, verified, and llama-server "
        "loads them under their split names.",
    )
    adapters: list[Adapter] = Field(
        default_factory=list[Adapter],
        max_length=8,
        description="LoRA adapters applied to every request, in order (--lora/--lora-scaled); "
        "each fetched, verified, beside the model.",
    )
    projector: Projector | None = Field(
        default=None,
        description="A multimodal projector (--mmproj): vision or audio input for the model.",
    )
    gguf: GgufMetadata = Field(description="Header facts sizing needs.")
    source: str | None = Field(
        default=None,
        description="Where `pulumi up` syncs it from, on the machine that runs it: an absolute "
        "path, a path under ~/, or ollama://name:tag. Absent: already in the store.",
    )
    accelerator: Literal["cpu", "gpu", "any"] = Field(
        default="cpu", description="Which tier kinds may serve it."
    )
    min_isa: IsaLevel = Field(default="x86-64", description="Oldest CPU level worth serving on.")
    tiers: list[Name] = Field(min_length=1, description="Tiers that serve it, in order.")
    context_length: int = Field(ge=256, description="Context per parallel slot, tokens.")
    max_tokens: int = Field(
        default=1024,
        ge=1,
        description="Most tokens one request may generate: the gateway caps each request's "
        "max_tokens (and sets it when a request omits it) and llama-server gets --n-predict, "
        "so a request's length, and a rollout's drain, are bounded. Below contextLength.",
    )
    parallel: int = Field(default=1, ge=1, le=64, description="Concurrent slots per replica.")
    cpus: int = Field(default=4, ge=1, le=256, description="CPU limit = threads (-t).")
    gpus: int = Field(default=1, ge=1, le=16, description="GPUs per replica on gpu tiers.")
    cache_ram_mib: int = Field(
        default=512, ge=0, le=65536, description="Prompt cache in host RAM (--cache-ram)."
    )
    kv_cache_type: Literal["f16", "q8_0", "q4_0"] = Field(
        default="f16", description="KV cache element type."
    )
    load_mode: Literal["mmap", "mlock", "mmap+mlock", "none"] = Field(
        default="mmap", description="llama-server --load-mode."
    )
    chat_template: BuiltinChatTemplate | None = Field(
        default=None,
        description="A built-in chat template of the pinned llama.cpp build (e.g. chatml, "
        "gemma, llama3), served with --no-jinja; absent: the GGUF's own template.",
    )
    sampling: SamplingDefaults = Field(
        default_factory=SamplingDefaults,
        description="Default sampling (temperature, top-k/p, min-p, repeat penalty, seed, stop "
        "strings); requests may override each.",
    )
    replicas: Range = Field(description="Autoscaling range per team and tier.")
    embeddings: EmbeddingsConfig | None = Field(
        default=None,
        description="Serve embeddings (`/v1/embeddings`) instead of chat and completions: "
        "llama-server with --embeddings, a batch of a whole slot's context (sized), and "
        "`pooling`. Give `{}` for the GGUF's own pooling.",
    )

    @model_validator(mode="after")
    def _embeddings_generate_nothing(self) -> Model:
        if self.embeddings is None:
            return self
        generation = {
            "chatTemplate": self.chat_template is not None,
            "sampling": self.sampling != SamplingDefaults(),
            "projector": self.projector is not None,
        }
        given = [key for key, present in generation.items() if present]
        if given:
            raise ValueError(
                f"an embeddings model generates nothing: drop {', '.join(given)} (declare the "
                "file a second time, without embeddings, to chat with it)"
            )
        return self

    @field_validator("kv_cache_type")
    @classmethod
    def _quantised_cache_fits_the_heads(cls, kv_type: str, info: ValidationInfo) -> str:
        gguf = info.data.get("gguf")
        block = QUANTISED_KV_BLOCK.get(kv_type)
        if block is None or not isinstance(gguf, GgufMetadata):
            return kv_type
        widths = {"keyLength": gguf.key_length, "valueLength": gguf.value_length}
        uneven = [f"{key} {width}" for key, width in widths.items() if width % block]
        if uneven:
            raise ValueError(
                f"{kv_type} stores {block}-value blocks, which must divide each head "
                f"({', '.join(uneven)}): llama-server refuses to start; use f16"
            )
        return kv_type

    @field_validator("max_tokens")
    @classmethod
    def _room_for_a_prompt(cls, max_tokens: int, info: ValidationInfo) -> int:
        context = info.data.get("context_length")
        if isinstance(context, int) and max_tokens >= context:
            raise ValueError(
                f"must be below contextLength ({context}), which holds the prompt as well"
            )
        return max_tokens

    @model_validator(mode="after")
    def _every_shard_pinned(self) -> Model:
        count = self.gguf.split_count
        if count is not None and len(self.shards) != count - 1:
            raise ValueError(
                f"gguf.splitCount is {count}: pin shards 2..{count} under shards "
                f"({len(self.shards)} given; `llamafleet models inspect --json --digest` on "
                "shard 1 prints them)"
            )
        if count is None and self.shards:
            raise ValueError(
                "shards pins a split model's other files, but gguf.splitCount is absent "
                "(inspect prints it for shard 1)"
            )
        return self

    @field_validator("adapters")
    @classmethod
    def _each_adapter_once(cls, adapters: list[Adapter]) -> list[Adapter]:
        digests = [adapter.digest for adapter in adapters]
        twice = sorted({digest for digest in digests if digests.count(digest) > 1})
        if twice:
            raise ValueError(f"{twice[0]} is listed twice; llama-server would apply it twice")
        return adapters

    @model_validator(mode="after")
    def _parts_sync_with_the_model(self) -> Model:
        parts = [f"adapters[{i}]" for i in range(len(self.adapters))]
        parts += ["projector"] if self.projector is not None else []
        files = [*self.adapters, *([self.projector] if self.projector is not None else [])]
        if self.source is not None:
            unsourced = [key for key, part in zip(parts, files, strict=True) if part.source is None]
            if unsourced:
                raise ValueError(
                    f"the model has a source, so {', '.join(unsourced)} need one too: `pulumi "
                    "up` syncs a model's files together"
                )
        else:
            sourced = [key for key, part in zip(parts, files, strict=True) if part.source]
            if sourced:
                raise ValueError(
                    f"{', '.join(sourced)} name a source but the model has none: give the "
                    "model's source too, or none (already in the store)"
                )
        return self

    @property
    def files_size_bytes(self) -> int:
        """Bytes of every file the model is served from: its own (every shard), its adapters
        and its projector."""
        parts = [*self.shards, *self.adapters, *([self.projector] if self.projector else [])]
        return self.size_bytes + sum(part.size_bytes for part in parts)

    @field_validator("source")
    @classmethod
    def _known_source(cls, source: str | None) -> str | None:
        problem = None if source is None else settings_source_problem(source)
        if problem is not None:
            raise ValueError(problem)
        return source

    queue_per_replica: int = Field(
        default=2, ge=1, description="Queued requests per replica that trigger a scale-up."
    )
    tokens_per_second: float = Field(
        default=10,
        gt=0,
        le=100000,
        description="Tokens one slot generates a second on the model's slowest tier, measured "
        "(benchmarks/serving): with maxTokens it bounds a request's length, and so how long a "
        "stopping pod drains before SIGTERM (never past requestTimeoutSeconds).",
    )
    former_name: Name | None = Field(
        default=None,
        description="The name this model had before a rename: its resources carry Pulumi "
        "aliases, so what can be kept is kept (README: renames).",
    )


# `llamafleet:tenants.<team>.quota` is the Tenant component's quota config; it must cover the
# minimum replicas plus one rollout surge pod (llamafleet.settings.rules).
Quota = TenantQuota


class RateLimits(Strict):
    """`llamafleet:tenants.<team>.limits`: the team's limits per minute at the gateway, shared
    by its replicas through Redis; past one, a request gets 429 with Retry-After."""

    requests_per_minute: int | None = Field(
        default=None, ge=1, description="Requests per minute; absent: no limit."
    )
    tokens_per_minute: int | None = Field(
        default=None, ge=1, description="Tokens (prompt + completion) per minute; absent: none."
    )


class TenantSettings(TenantConfig):
    """`llamafleet:tenants.<team>`: a team: the Tenant's config (its quota and API keys) plus
    the models it may call and its limits at the gateway."""

    models: list[Name] = Field(min_length=1, description="Models the team may call.")
    limits: RateLimits = Field(
        default_factory=RateLimits, description="Requests and tokens per minute at the gateway."
    )
    former_name: Name | None = Field(
        default=None,
        description="The name this team had before a rename: its resources carry Pulumi "
        "aliases, so what can be kept is kept (README: renames).",
    )


class Settings(Strict):
    """Everything under `llamafleet:` in a stack file."""

    clusters: dict[Name, Cluster] = Field(min_length=1, description="Clusters by name.")
    model_store: ModelStoreSettings = Field(description="Where the GGUF files live.")
    images: Images = Field(description="Images, pinned by digest.")
    serving: Serving = Field(default_factory=Serving, description="Fleet-wide serving defaults.")
    models: dict[Name, Model] = Field(min_length=1, description="Models by name.")
    tenants: dict[Name, TenantSettings] = Field(min_length=1, description="Teams by name.")
    alerting: AlertingConfig = Field(
        default_factory=AlertingConfig,
        description="Alert durations and thresholds, runbooks, Alertmanager receivers.",
    )
