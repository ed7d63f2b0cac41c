"""EC2 instance facts the tier rules check settings against: each family's newest x86 level and
its GPU (from AWS's instance type pages; every size of a family shares them)."""

from __future__ import annotations

from dataclasses import dataclass

from llamafleet.settings.types import IsaLevel


@dataclass(frozen=True)
class InstanceFamily:
    """What every size of an EC2 instance family has (the tier rules check settings against it)."""

    isa: IsaLevel
    cpu: str
    gpu: str | None = None
    gpu_memory_gib: float = 0


_SKYLAKE = InstanceFamily("avx512", "Intel Skylake/Cascade Lake")
_ROME = InstanceFamily("avx2", "AMD Rome: no AVX-512")
_MILAN = InstanceFamily("avx2", "AMD Milan: no AVX-512")
_GENOA = InstanceFamily("avx512-vnni", "AMD Genoa")
_ICE_LAKE = InstanceFamily("avx512-vnni", "Intel Ice Lake")
_SAPPHIRE_RAPIDS = InstanceFamily("amx", "Intel Sapphire Rapids")

INSTANCE_FAMILIES: dict[str, InstanceFamily] = {
    **dict.fromkeys(("m5", "c5", "r5"), _SKYLAKE),
    **dict.fromkeys(("m5a", "c5a", "r5a"), _ROME),
    **dict.fromkeys(("m6a", "c6a", "r6a"), _MILAN),
    **dict.fromkeys(("m7a", "c7a", "r7a"), _GENOA),
    **dict.fromkeys(("m6i", "c6i", "r6i"), _ICE_LAKE),
    **dict.fromkeys(("m7i", "m7i-flex", "c7i", "r7i"), _SAPPHIRE_RAPIDS),
    "g4dn": InstanceFamily("avx512-vnni", "Intel Cascade Lake", "nvidia-t4", 16),
    "g5": InstanceFamily("avx2", "AMD Rome: no AVX-512", "nvidia-a10g", 24),
    "g6": InstanceFamily("avx2", "AMD Milan: no AVX-512", "nvidia-l4", 24),
    "g6e": InstanceFamily("avx2", "AMD Milan: no AVX-512", "nvidia-l40s", 48),
    "p4d": InstanceFamily("avx512-vnni", "Intel Cascade Lake", "nvidia-a100", 40),
    "p5": InstanceFamily("avx2", "AMD Milan: no AVX-512", "nvidia-h100", 80),
}


def instance_family(instance_type: str) -> str:
    """`m6i.4xlarge` -> `m6i`: an EC2 instance type's family, the key of INSTANCE_FAMILIES."""
    return instance_type.split(".", 1)[0]
