"""PodDisruptionBudget specs for the Deployments the stack runs, as plain data (no Pulumi).

A node drain (`kubectl drain`, an EKS managed node group's update or Spot rebalance, a cluster
autoscaler's scale-down) evicts pods through the Eviction API, which the budget may refuse (429
Too Many Requests) so the drain waits. Kubernetes API: policy/v1 PodDisruptionBudgetSpec
(`minAvailable`, `maxUnavailable`, `unhealthyPodEvictionPolicy`, GA in 1.31).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


def disruption_budget(
    selector: Mapping[str, str], min_replicas: int, *, reclaimable: bool = False
) -> dict[str, Any]:
    """The PodDisruptionBudget spec for the pods `selector` matches, of a Deployment that runs at
    least `min_replicas` (0 where an autoscaler may scale it to zero), on nodes the cloud may
    reclaim (`reclaimable`: EKS spot capacity) or not.

    With two or more, `maxUnavailable: 1`: a drain evicts one pod at a time and the others
    serve. With at most one, `minAvailable: 1`: evicting the lone ready pod is refused, so a
    drain waits instead of taking the model offline until a replacement has fetched and loaded
    it (minutes). The operator then rolls the Deployment first (`kubectl rollout restart`): its
    rolling update (maxSurge 1, maxUnavailable 0) starts the new pod on another node (the
    drained one is cordoned) and stops the old one, through its preStop drain, only once the new
    one is ready; the drain then finds nothing left to wait for. At zero pods the budget has
    nothing to protect and blocks nothing.

    On `reclaimable` nodes always `maxUnavailable: 1`: a spot node goes 2 minutes after its
    interruption notice whatever the budget says, and a refused eviction only means the pod is
    killed with the node instead of drained through its preStop hook (the managed node group's
    drain of a rebalance or reclaim evicts; settings rules keep the drain within the notice).
    A model that must stay up on spot runs `replicas.min` of 2 or more.

    `unhealthyPodEvictionPolicy: AlwaysAllow`: a pod that is not ready (still loading, or
    crash-looping) can always be evicted, so it never blocks a drain; the budget protects only
    pods that serve.

    Raises:
        ValueError: `min_replicas` is negative.
    """
    if min_replicas < 0:
        raise ValueError(f"min_replicas {min_replicas} is negative")
    lone = min_replicas <= 1 and not reclaimable
    budget: dict[str, Any] = {"minAvailable": 1} if lone else {"maxUnavailable": 1}
    return budget | {
        "selector": {"matchLabels": dict(selector)},
        "unhealthyPodEvictionPolicy": "AlwaysAllow",
    }
