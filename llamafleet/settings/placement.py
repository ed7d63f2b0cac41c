"""Where each team's copy of each model runs: settings in, one Placement per Deployment out."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from llamafleet.components.sizing import (
    GgufFacts,
    GiB,
    PodSizing,
    ServingShape,
    TierShape,
    size_pod,
)
from llamafleet.settings.names import instance_name
from llamafleet.settings.schema import GgufMetadata, Model, Settings, Tier


@dataclass(frozen=True)
class Placement:
    """One Deployment: a team's copy of a model on one tier of a cluster, and its pod's size."""

    team: str
    model_name: str
    model: Model
    cluster_name: str
    tier_name: str
    tier: Tier
    sizing: PodSizing

    @property
    def name(self) -> str:
        """The Deployment's, Service's, autoscaler's and ServiceAccount's name."""
        return instance_name(self.model_name, self.tier_name)


def gguf_facts(model: Model) -> GgufFacts:
    """What sizing needs of the model: the bytes of every file it is served from (every shard,
    adapter and projector: Model.files_size_bytes) and the `gguf` header facts."""
    return facts_of(model.gguf, model.files_size_bytes)


def facts_of(g: GgufMetadata, size_bytes: int) -> GgufFacts:
    """Sizing's view of a `gguf` block (as `llamafleet models inspect --json` prints it) of a
    file of `size_bytes`."""
    return GgufFacts(
        size_bytes=size_bytes,
        block_count=g.block_count,
        head_count_kv=g.head_count_kv
        if isinstance(g.head_count_kv, int)
        else tuple(g.head_count_kv),
        key_length=g.key_length,
        value_length=g.value_length,
        context_length=g.context_length,
        vocab_size=g.vocab_size,
        sliding_window=g.sliding_window,
        sliding_window_layers=None
        if g.sliding_window_pattern is None
        else tuple(g.sliding_window_pattern),
    )


def serving_shape(model: Model, tier_kind: str) -> ServingShape:
    """How one replica serves `model`: context per slot, slots, CPUs, prompt cache (MiB) and KV
    cache type; `gpus` only where `tier_kind` is "gpu", else 0."""
    return ServingShape(
        context_per_slot=model.context_length,
        parallel=model.parallel,
        cpus=model.cpus,
        cache_ram_mib=model.cache_ram_mib,
        kv_cache_type=model.kv_cache_type,
        gpus=model.gpus if tier_kind == "gpu" else 0,
        embeddings=model.embeddings is not None,
    )


def pod_sizing(model: Model, tier_kind: str) -> PodSizing:
    """The size of one replica's pod (llamafleet.components.sizing.size_pod) on a tier of
    `tier_kind` ("gpu"; anything else counts as "cpu")."""
    kind = "gpu" if tier_kind == "gpu" else "cpu"
    return size_pod(gguf_facts(model), serving_shape(model, kind), kind)


def tier_shape(name: str, tier: Tier) -> TierShape:
    """One node of tier `name` as llamafleet.components.sizing sees it: GiB settings in bytes, 0
    GPUs where the tier has none."""
    return TierShape(
        name=name,
        kind=tier.kind,
        cpus_per_node=tier.cpus_per_node,
        memory_per_node_bytes=int(tier.memory_per_node_gib * GiB),
        gpus_per_node=tier.gpu.count if tier.gpu else 0,
        gpu_memory_bytes=int(tier.gpu.memory_gib * GiB) if tier.gpu else 0,
    )


def placements(settings: Settings, team: str | None = None) -> Iterator[Placement]:
    """Every (team, model, tier) Deployment, in settings order; unknown names are skipped
    (the rules report them)."""
    tier_cluster = {
        tier_name: (cluster_name, tier)
        for cluster_name, cluster in settings.clusters.items()
        for tier_name, tier in cluster.tiers.items()
    }
    for team_name, tenant in settings.tenants.items():
        if team is not None and team_name != team:
            continue
        for model_name in tenant.models:
            model = settings.models.get(model_name)
            if model is None:
                continue
            for tier_name in model.tiers:
                if tier_name not in tier_cluster:
                    continue
                cluster_name, tier = tier_cluster[tier_name]
                yield Placement(
                    team=team_name,
                    model_name=model_name,
                    model=model,
                    cluster_name=cluster_name,
                    tier_name=tier_name,
                    tier=tier,
                    sizing=pod_sizing(model, tier.kind),
                )
