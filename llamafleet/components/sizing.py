"""Memory, CPU and GPU sizing of one llama-server pod, from GGUF metadata and the tier it runs on.

Plain functions, no Pulumi: the settings validator, the InferenceService component and the tests
all call the same code, so what is checked is what is deployed.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

MiB = 1024**2
GiB = 1024**3

TierKind = Literal["cpu", "gpu"]
KvCacheType = Literal["f16", "q8_0", "q4_0"]

# Bytes per KV element; q8_0/q4_0 store 32 values plus one f16 scale per block.
KV_BYTES_PER_ELEMENT: dict[str, float] = {"f16": 2.0, "q8_0": 34 / 32, "q4_0": 18 / 32}
# Values per block of the quantised cache types: llama-server refuses a cache whose head size
# the block does not divide (llama_init_from_model in src/llama-context.cpp).
QUANTISED_KV_BLOCK: dict[str, int] = {"q8_0": 32, "q4_0": 32}

# Runtime, HTTP threads, allocator slack: measured llama-server RSS minus weights and KV stays
# well under this for every model we serve.
BASE_OVERHEAD_BYTES = 256 * MiB
# The logits buffer is n_vocab x n_ubatch floats; with 262k-token vocabularies it dominates.
# Also llama-server's default --ubatch-size, which sliding-window caches hold on top of the window.
UBATCH = 512
# llama.cpp pads the context, and the sliding-window cache, to 256 cells (src/llama-context.cpp,
# src/llama-kv-cache-iswa.cpp of the pinned build).
KV_CELL_PADDING = 256
# GPU tiers copy weights to the GPU through clean, reclaimable page cache: a window suffices.
GPU_HOST_STAGING_BYTES = 2 * GiB
# Kubelet, system daemons and the eviction threshold take this share of a node (at least 1 GiB).
NODE_MEMORY_RESERVED_FRACTION = 0.10
NODE_MEMORY_RESERVED_MIN = 1 * GiB
# Kubelet and system daemons take this share of a node's CPUs (at least half a CPU).
NODE_CPU_RESERVED_FRACTION = 0.10
NODE_CPU_RESERVED_MIN = 0.5
# The model-fetcher init container: hashing and S3 transfer, bounded memory.
FETCHER_CPU = 1
FETCHER_MEMORY_BYTES = 512 * MiB


@dataclass(frozen=True)
class GgufFacts:
    """What sizing needs from a GGUF header (as `llamafleet models inspect --json` prints it).

    `head_count_kv` is one count for every layer, or one per layer (0 on recurrent and
    convolution layers of hybrid models, which hold no KV cache). `sliding_window_layers` marks
    the layers whose cache holds a `sliding_window`-token window; None: every layer holds the
    whole context.
    """

    size_bytes: int
    block_count: int
    head_count_kv: int | tuple[int, ...]
    key_length: int
    value_length: int
    context_length: int
    vocab_size: int
    sliding_window: int | None = None
    sliding_window_layers: tuple[bool, ...] | None = None

    def kv_heads_per_layer(self) -> tuple[int, ...]:
        """KV heads of each layer."""
        if isinstance(self.head_count_kv, int):
            return (self.head_count_kv,) * self.block_count
        return self.head_count_kv

    def windowed_layers(self) -> tuple[bool, ...]:
        """Whether each layer's cache is a sliding window (all False without one)."""
        if self.sliding_window is None or self.sliding_window_layers is None:
            return (False,) * self.block_count
        return self.sliding_window_layers


@dataclass(frozen=True)
class TierShape:
    """One node of a tier: what a pod placed there can get."""

    name: str
    kind: TierKind
    cpus_per_node: float
    memory_per_node_bytes: int
    gpus_per_node: int = 0
    gpu_memory_bytes: int = 0

    @property
    def allocatable_memory_bytes(self) -> int:
        """Bytes a node leaves to pods: its memory less 10% (at least 1 GiB) for kubelet,
        system daemons and the eviction threshold."""
        reserved = max(
            NODE_MEMORY_RESERVED_MIN,
            int(self.memory_per_node_bytes * NODE_MEMORY_RESERVED_FRACTION),
        )
        return self.memory_per_node_bytes - reserved

    @property
    def allocatable_cpus(self) -> float:
        """CPUs a node leaves to pods: its CPUs less 10% (at least 0.5) for kubelet and system
        daemons."""
        reserved = max(NODE_CPU_RESERVED_MIN, self.cpus_per_node * NODE_CPU_RESERVED_FRACTION)
        return self.cpus_per_node - reserved


@dataclass(frozen=True)
class ServingShape:
    """How one model is served: slots, context per slot, threads, caches."""

    context_per_slot: int
    parallel: int
    cpus: int
    cache_ram_mib: int
    kv_cache_type: KvCacheType = "f16"
    gpus: int = 0
    embeddings: bool = False

    @property
    def ubatch(self) -> int:
        """--ubatch-size: llama-server's default (512) for generation; for embeddings the whole
        context of a slot, as a pooled input must fit one ubatch (the pinned server refuses a
        longer one: "input is too large to process. increase the physical batch size")."""
        return self.context_per_slot if self.embeddings else UBATCH

    @property
    def total_context(self) -> int:
        """--ctx-size: tokens of context for all slots together (per slot x --parallel)."""
        # With --kv-unified the slots share one buffer of -c tokens, so -c covers all of them.
        return self.context_per_slot * self.parallel


@dataclass(frozen=True)
class PodSizing:
    """The numbers a pod spec and its checks are made of."""

    weights_bytes: int
    kv_cache_bytes: int
    cache_ram_bytes: int
    overhead_bytes: int
    memory_bytes: int
    cpus: int
    gpus: int
    gpu_memory_needed_bytes: int

    @property
    def memory_mib(self) -> int:
        """`memory_bytes` in MiB, rounded up."""
        return math.ceil(self.memory_bytes / MiB)


def _pad(cells: int) -> int:
    return -(-cells // KV_CELL_PADDING) * KV_CELL_PADDING


def kv_bytes_per_token(facts: GgufFacts, kv_cache_type: KvCacheType) -> float:
    """K and V of one token in every layer: sum over layers of n_kv_heads x (k_len + v_len) x
    bytes per element."""
    heads = sum(facts.kv_heads_per_layer())
    return heads * (facts.key_length + facts.value_length) * KV_BYTES_PER_ELEMENT[kv_cache_type]


def kv_cells_per_layer(facts: GgufFacts, shape: ServingShape) -> tuple[int, ...]:
    """Cells (tokens) of each layer's KV cache, as the pinned llama-server allocates them with
    --kv-unified: the whole context padded to 256, or on a sliding-window layer the window for
    every slot plus one ubatch, padded to 256 and at most the whole context. An embeddings
    server (no --kv-unified, a ubatch of a slot's whole context) is charged the whole context on
    every layer: its window plus ubatch covers a slot anyway."""
    whole = _pad(shape.total_context)
    window = whole
    if facts.sliding_window is not None and not shape.embeddings:
        window = min(whole, _pad(facts.sliding_window * shape.parallel + UBATCH))
    return tuple(window if windowed else whole for windowed in facts.windowed_layers())


def kv_cache_bytes(facts: GgufFacts, shape: ServingShape) -> int:
    """Bytes of KV cache of the cache type: per layer, its cells x n_kv_heads x (k_len + v_len)
    x bytes per element (layers without KV heads hold none), rounded up."""
    per_element = KV_BYTES_PER_ELEMENT[shape.kv_cache_type]
    width = facts.key_length + facts.value_length
    elements = sum(
        cells * heads * width
        for cells, heads in zip(
            kv_cells_per_layer(facts, shape), facts.kv_heads_per_layer(), strict=True
        )
    )
    return math.ceil(elements * per_element)


# Embeddings: llama-server's buffers per ubatch token, in vocabulary x 4-byte floats. Measured
# with the pinned build on gemma-3-270m Q4_K_M (262,144-token vocabulary, --embeddings --pooling
# mean, -c/-b/-ub 2048, one 1,502-token input): 3.47 GB RSS against 0.36 GB at generation's
# 512, about 2 x vocabulary x 4 bytes per token (the logits buffer and the output's compute
# buffer); tests/image/test_embeddings.py checks a pod's RSS stays under its sizing.
EMBEDDINGS_BUFFERS_PER_TOKEN = 2


def overhead_bytes(facts: GgufFacts, shape: ServingShape | None = None) -> int:
    """Bytes beyond weights and KV cache: 256 MiB of runtime plus the logits buffer (vocabulary
    x ubatch x 4-byte floats; the ubatch is 512 for generation); for an embeddings server
    (`shape.embeddings`), twice that per token of its ubatch (EMBEDDINGS_BUFFERS_PER_TOKEN)."""
    if shape is not None and shape.embeddings:
        return BASE_OVERHEAD_BYTES + facts.vocab_size * shape.ubatch * 4 * (
            EMBEDDINGS_BUFFERS_PER_TOKEN
        )
    return BASE_OVERHEAD_BYTES + facts.vocab_size * UBATCH * 4


def size_pod(facts: GgufFacts, shape: ServingShape, tier_kind: TierKind) -> PodSizing:
    """Memory limit = request (Guaranteed QoS: the pod is the last to be OOM-killed or evicted).

    CPU tiers hold weights (mmapped, counted by the cgroup as page cache), KV cache, the prompt
    cache (`--cache-ram`) and runtime overhead in host memory. GPU tiers hold weights, KV and
    compute buffers on the GPU; the host keeps the prompt cache and stages weights through
    reclaimable page cache while loading.
    """
    kv = kv_cache_bytes(facts, shape)
    overhead = overhead_bytes(facts, shape)
    cache_ram = shape.cache_ram_mib * MiB
    if tier_kind == "gpu":
        host = cache_ram + BASE_OVERHEAD_BYTES + GPU_HOST_STAGING_BYTES
        gpu_needed = facts.size_bytes + kv + overhead
    else:
        host = facts.size_bytes + kv + cache_ram + overhead
        gpu_needed = 0
    memory = math.ceil(host / MiB) * MiB
    return PodSizing(
        weights_bytes=facts.size_bytes,
        kv_cache_bytes=kv,
        cache_ram_bytes=cache_ram,
        overhead_bytes=overhead,
        memory_bytes=memory,
        cpus=shape.cpus,
        gpus=shape.gpus,
        gpu_memory_needed_bytes=gpu_needed,
    )


def fit_problems(sizing: PodSizing, tier: TierShape) -> list[str]:
    """Why a pod of this size cannot run on one node of the tier (empty when it fits)."""
    problems: list[str] = []
    if sizing.memory_bytes > tier.allocatable_memory_bytes:
        problems.append(
            f"needs {sizing.memory_bytes / GiB:.1f} GiB of memory (weights "
            f"{sizing.weights_bytes / GiB:.1f} + KV cache {sizing.kv_cache_bytes / GiB:.1f} + "
            f"cache-ram {sizing.cache_ram_bytes / GiB:.1f} + overhead "
            f"{sizing.overhead_bytes / GiB:.1f}) but a {tier.name} node can allocate "
            f"{tier.allocatable_memory_bytes / GiB:.1f} GiB"
        )
    if sizing.cpus > tier.allocatable_cpus:
        problems.append(
            f"asks for {sizing.cpus} CPUs but a {tier.name} node can allocate "
            f"{tier.allocatable_cpus:g}"
        )
    if tier.kind == "gpu":
        available = sizing.gpus * tier.gpu_memory_bytes
        if sizing.gpus > tier.gpus_per_node:
            problems.append(
                f"asks for {sizing.gpus} GPUs but a {tier.name} node has {tier.gpus_per_node}"
            )
        elif sizing.gpu_memory_needed_bytes > available:
            problems.append(
                f"needs {sizing.gpu_memory_needed_bytes / GiB:.1f} GiB of GPU memory for "
                f"weights, KV cache and compute buffers but {sizing.gpus} GPU(s) of "
                f"{tier.name} hold {available / GiB:.1f} GiB"
            )
    return problems


def startup_failure_threshold(facts: GgufFacts, period_seconds: int) -> int:
    """Probe attempts before a loading pod is restarted: 60 s plus 20 s per GiB of weights,
    enough for a cold page cache on network-attached disks."""
    budget = 60 + 20 * facts.size_bytes / GiB
    return math.ceil(budget / period_seconds)
