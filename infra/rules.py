"""Rules that span several settings: placement, fit, references and quotas.

Each returns `Problem`s naming the key path, so the loader can report them like schema errors.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from components.sizing import FETCHER_CPU, FETCHER_MEMORY_BYTES, GiB, PodSizing, fit_problems
from infra.placement import Placement, placements, pod_sizing, tier_shape
from infra.schema import ISA_LEVELS, Model, Quota, Range, Settings, Tier


@dataclass(frozen=True)
class Problem:
    path: str
    message: str


def check(settings: Settings) -> list[Problem]:
    return [
        *_ranges(settings),
        *_tiers(settings),
        *_models(settings),
        *_tenants(settings),
    ]


def _range(path: str, value: Range) -> Iterator[Problem]:
    if value.min > value.max:
        yield Problem(path, f"min ({value.min}) must not exceed max ({value.max})")


def _ranges(settings: Settings) -> Iterator[Problem]:
    for cluster_name, cluster in settings.clusters.items():
        for tier_name, tier in cluster.tiers.items():
            yield from _range(f"clusters.{cluster_name}.tiers.{tier_name}.nodes", tier.nodes)
    for model_name, model in settings.models.items():
        yield from _range(f"models.{model_name}.replicas", model.replicas)


def _tiers(settings: Settings) -> Iterator[Problem]:
    seen: dict[str, str] = {}
    for cluster_name, cluster in settings.clusters.items():
        for tier_name, tier in cluster.tiers.items():
            path = f"clusters.{cluster_name}.tiers.{tier_name}"
            if tier_name in seen:
                yield Problem(
                    path,
                    f"tier name already used in cluster {seen[tier_name]}; tier names are "
                    "node labels and must be unique in a stack",
                )
            seen[tier_name] = cluster_name
            yield from _tier_gpu(path, tier)


def _tier_gpu(path: str, tier: Tier) -> Iterator[Problem]:
    if tier.kind == "gpu" and tier.gpu is None:
        yield Problem(f"{path}.gpu", "a gpu tier needs gpu: {type, count, memoryGib}")
    if tier.kind == "cpu" and tier.gpu is not None:
        yield Problem(f"{path}.gpu", "only gpu tiers have GPUs; set kind: gpu or remove gpu")


def _models(settings: Settings) -> Iterator[Problem]:
    tiers = {name: tier for c in settings.clusters.values() for name, tier in c.tiers.items()}
    has_gpu_tier = any(tier.kind == "gpu" for tier in tiers.values())
    for name, model in settings.models.items():
        path = f"models.{name}"
        if model.context_length > model.gguf.context_length:
            yield Problem(
                f"{path}.contextLength",
                f"{model.context_length} exceeds the {model.gguf.context_length} tokens the "
                "model was trained for",
            )
        if model.replicas.min == 0 and not _keda_everywhere(settings, model, tiers):
            yield Problem(
                f"{path}.replicas.min",
                "0 (scale to zero) needs autoscaler: keda on every cluster serving it",
            )
        if model.accelerator == "gpu" and not has_gpu_tier:
            yield Problem(
                f"{path}.accelerator", "gpu, but this stack has no gpu tier (all tiers are cpu)"
            )
            continue
        if model.accelerator != "cpu" and has_gpu_tier and settings.images.cuda is None:
            yield Problem("images.cuda", f"model {name} may run on GPUs: set the CUDA image")
        for index, tier_name in enumerate(model.tiers):
            tier = tiers.get(tier_name)
            tier_path = f"{path}.tiers[{index}]"
            if tier is None:
                yield Problem(tier_path, f"unknown tier {tier_name!r}; known: {sorted(tiers)}")
                continue
            yield from _placement(tier_path, name, model, tier_name, tier)


def _keda_everywhere(settings: Settings, model: Model, tiers: dict[str, Tier]) -> bool:
    return all(
        cluster.autoscaler == "keda"
        for cluster in settings.clusters.values()
        if any(tier in cluster.tiers for tier in model.tiers if tier in tiers)
    )


def _placement(path: str, name: str, model: Model, tier_name: str, tier: Tier) -> Iterator[Problem]:
    if model.accelerator not in ("any", tier.kind):
        yield Problem(
            path, f"{tier_name} is a {tier.kind} tier but model {name} is {model.accelerator}"
        )
        return
    if ISA_LEVELS.index(tier.isa) < ISA_LEVELS.index(model.min_isa):
        yield Problem(
            path, f"{tier_name} nodes are {tier.isa}, older than the model's minIsa {model.min_isa}"
        )
    sizing = pod_sizing(model, tier.kind)
    for reason in fit_problems(sizing, tier_shape(tier_name, tier)):
        yield Problem(path, f"model {name} does not fit on {tier_name}: it {reason}")


def _tenants(settings: Settings) -> Iterator[Problem]:
    for team, tenant in settings.tenants.items():
        path = f"tenants.{team}"
        for index, model in enumerate(tenant.models):
            if model not in settings.models:
                yield Problem(
                    f"{path}.models[{index}]",
                    f"unknown model {model!r}; known: {sorted(settings.models)}",
                )
        if all(model in settings.models for model in tenant.models):
            yield from _quota(path, tenant.quota, list(placements(settings, team)))


def _quota(path: str, quota: Quota, team_placements: list[Placement]) -> Iterator[Problem]:
    pods = [(p.sizing, p.model.replicas.min) for p in team_placements]
    if not pods:
        return
    # A rolling update with maxUnavailable 0 needs room for one surge pod on top of the minimum.
    largest = max(pods, key=lambda item: item[0].memory_bytes)[0]
    need_cpus = sum(_cpus(s) * n for s, n in pods) + _cpus(largest)
    need_memory = sum(_memory(s) * n for s, n in pods) + _memory(largest)
    need_gpus = sum(s.gpus * n for s, n in pods) + largest.gpus
    need_pods = sum(n for _, n in pods) + 1
    wanted = {
        "cpus": (need_cpus, quota.cpus, ""),
        "memoryGib": (need_memory / GiB, quota.memory_gib, " GiB"),
        "gpus": (need_gpus, quota.gpus, ""),
        "pods": (need_pods, quota.pods, ""),
    }
    for key, (need, have, unit) in wanted.items():
        if need > have:
            yield Problem(
                f"{path}.quota.{key}",
                f"{have:g}{unit} is below the {need:g}{unit} the team's minimum replicas plus one "
                "rollout surge pod need",
            )


def _cpus(sizing: PodSizing) -> float:
    # The quota counts the larger of the init container and the main container.
    return max(sizing.cpus, FETCHER_CPU)


def _memory(sizing: PodSizing) -> int:
    return max(sizing.memory_bytes, FETCHER_MEMORY_BYTES)
