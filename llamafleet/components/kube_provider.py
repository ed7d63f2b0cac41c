"""The Kubernetes provider every cluster of a stack is reached through, with the same options."""

from __future__ import annotations

import pulumi
import pulumi_kubernetes as k8s


def kubernetes_provider(
    name: str,
    kubeconfig: pulumi.Input[str] | None = None,
    context: str | None = None,
    opts: pulumi.ResourceOptions | None = None,
) -> k8s.Provider:
    """A provider for the cluster `kubeconfig` (a path or its contents; None: $KUBECONFIG).

    - Server-side apply: objects are applied as a field manager, so what other controllers own
      (an autoscaler's replicas) is left to them, and a create upserts, which lets an interrupted
      `up` be finished by the next one.
    - Mutable Secrets: a changed Secret (a team's keys) is updated in place, never deleted and
      made again, so no pod starting in between finds its Secret missing (pulumi-kubernetes
      replaces Secrets on a data change unless `enableSecretMutable` is set).
    - Mutable ConfigMaps, for the same reason and so a mounted one changes in place: the
      gateway re-reads its routing table from the kubelet's updated copy, with no restart.
    """
    return k8s.Provider(
        name,
        kubeconfig=kubeconfig,
        context=context,
        enable_server_side_apply=True,
        enable_secret_mutable=True,
        enable_config_map_mutable=True,
        opts=opts,
    )
