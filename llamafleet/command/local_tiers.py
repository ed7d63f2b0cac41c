"""A stack's tiers as fake nodes for scripts/local-cluster (the JSON its `up` and `nodes` take).

Each tier gets `nodes.max` nodes of its per-node CPUs and memory, labelled with its ISA level;
a GPU tier gets its GPUs as `nvidia.com/gpu` capacity, and local-cluster taints it as NodeTier
taints GPU nodes, so only pods that tolerate the taint land there.
"""

from __future__ import annotations

import math
from typing import Any

from llamafleet.components.labels import ISA_LABEL
from llamafleet.settings.schema import Settings


def node_tiers(settings: Settings) -> list[dict[str, Any]]:
    """One entry per tier of every cluster of `settings`."""
    return [
        {
            "name": name,
            "count": tier.nodes.max,
            "cpu": f"{tier.cpus_per_node:g}",
            "memory": f"{math.floor(tier.memory_per_node_gib * 1024)}Mi",
            "labels": {ISA_LABEL: tier.isa},
            "taints": [],
            "gpus": tier.gpu.count if tier.gpu is not None else 0,
        }
        for cluster in settings.clusters.values()
        for name, tier in cluster.tiers.items()
    ]
