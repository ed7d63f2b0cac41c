"""Clusters from settings: create (EKS) or prepare (existing) each one, and hand back what the
program needs to put workloads on it: a Kubernetes provider and how its load balancers work."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace

import pulumi
import pulumi_kubernetes as k8s

from llamafleet.components.cluster_addons import (
    ChartVersions,
    ClusterAddons,
    ClusterAddonsArgs,
)
from llamafleet.components.eks_cluster import EksCluster, service_account_role
from llamafleet.components.kube_provider import kubernetes_provider
from llamafleet.components.load_balancing import LoadBalancing, aws_nlb, metallb
from llamafleet.components.node_tier import NodeTier, NodeTierArgs
from llamafleet.components.onprem_cluster import (
    OnPremCluster,
    OnPremClusterArgs,
    TierNodes,
)
from llamafleet.settings.cluster import EksSettings, OnPremSettings
from llamafleet.settings.names import eks_cluster_name, node_tier_name, pod_role_name
from llamafleet.settings.schema import Cluster, ModelStoreSettings


@dataclass(frozen=True)
class ProvisionedCluster:
    """A cluster `provision` made ready: its settings, the Kubernetes provider workloads use,
    what they wait for, and (EKS only) the EksCluster; `addons` where any are installed."""

    name: str
    settings: Cluster
    provider: k8s.Provider
    # What add-ons and workloads wait for (node groups, node labels); empty for a bare cluster.
    ready: tuple[pulumi.Resource, ...] = ()
    eks: EksCluster | None = None
    addons: ClusterAddons | None = None

    @property
    def depends_on(self) -> list[pulumi.Resource]:
        """For workloads: nodes labelled and add-ons (KEDA's CRDs, the GPU plugin) installed."""
        return [*self.ready, *([self.addons] if self.addons else [])]

    def load_balancing(self, drain_seconds: int) -> LoadBalancing:
        """Annotations and spec fields for the gateway's LoadBalancer Service."""
        lb = self.settings.load_balancer
        if self.settings.kind == "eks":
            return aws_nlb(lb.scheme, drain_seconds, lb.source_ranges)
        pool = self.settings.onprem.metallb if self.settings.onprem else None
        if pool is not None:
            return metallb(pool.pool, lb.address, lb.source_ranges)
        return LoadBalancing(annotations={}, spec={"type": "LoadBalancer"})

    def pod_role(
        self,
        team: str,
        instance: str,
        namespace: str,
        policy_arn: pulumi.Input[str],
        former_names: Sequence[str] = (),
    ) -> pulumi.Output[str] | None:
        """EKS: the ARN of a role only `namespace/instance` (the ServiceAccount of a team's
        model on a tier) assumes, with `policy_arn` (e.g. the model store's read policy for the
        model fetcher); None on other clusters."""
        if self.eks is None:
            return None
        service_account = instance
        role = service_account_role(
            pod_role_name(self.name, team, instance),
            self.eks.oidc,
            namespace=namespace,
            service_account=service_account,
            policy_arn=policy_arn,
            # After a rename the role is kept: it was named from the same parts.
            opts=pulumi.ResourceOptions(
                parent=self.eks, aliases=[pulumi.Alias(name=name) for name in former_names]
            ),
        )
        return role.arn


def provision(
    name: str,
    cluster: Cluster,
    store: ModelStoreSettings,
    models_read_policy_arn: pulumi.Input[str] | None = None,
) -> ProvisionedCluster:
    """`models_read_policy_arn`: the model store's read-only policy for EKS nodes (None: an
    on-prem store, read with its key pair; nodes then get no store policy)."""
    if cluster.kind == "eks" and cluster.eks is not None:
        provisioned = _eks(name, cluster, cluster.eks, store, models_read_policy_arn)
    elif cluster.onprem is not None:
        provisioned = _onprem(name, cluster, cluster.onprem)
    else:
        provider = kubernetes_provider(
            f"{name}-k8s", kubeconfig=cluster.kubeconfig.path, context=cluster.kubeconfig.context
        )
        provisioned = ProvisionedCluster(name=name, settings=cluster, provider=provider)
    if cluster.addons is None:
        return provisioned
    addons = ClusterAddons(
        f"{name}-addons",
        _addons_args(cluster, provisioned.eks),
        opts=pulumi.ResourceOptions(
            provider=provisioned.provider, depends_on=list(provisioned.ready)
        ),
    )
    return replace(provisioned, addons=addons)


def _eks(
    name: str,
    cluster: Cluster,
    eks_settings: EksSettings,
    store: ModelStoreSettings,
    models_read_policy_arn: pulumi.Input[str] | None,
) -> ProvisionedCluster:
    # The settings section is the component's config (plus the node groups' root volume).
    eks = EksCluster(name, eks_settings, cluster_name=eks_cluster_name(pulumi.get_stack(), name))
    # The store's read-only policy (AWS S3); none where the store is on-prem (pods read it
    # with its key pair), so nodes get no access to an AWS bucket of that name.
    read_policy = models_read_policy_arn
    tiers = tuple(
        NodeTier(
            node_tier_name(name, tier_name),
            NodeTierArgs(
                cluster_name=eks.cluster.name,
                subnet_ids=eks.private_subnet_ids,
                tier=tier_name,
                kind=tier.kind,
                isa=tier.isa,
                instance_types=tuple(tier.instance_types),
                capacity_type=tier.capacity_type,
                min_size=tier.nodes.min,
                max_size=tier.nodes.max,
                desired_size=tier.nodes.min if tier.desired_nodes is None else tier.desired_nodes,
                models_read_policy_arn=read_policy,
                root_volume_gib=eks_settings.node_root_volume_gib,
            ),
            opts=pulumi.ResourceOptions(
                depends_on=[eks],
                # A renamed tier keeps its node group and role (their labels are updated).
                aliases=[pulumi.Alias(name=node_tier_name(name, tier.former_name))]
                if tier.former_name
                else None,
            ),
        )
        for tier_name, tier in cluster.tiers.items()
    )
    provider = kubernetes_provider(f"{name}-k8s", kubeconfig=eks.kubeconfig)
    return ProvisionedCluster(name=name, settings=cluster, provider=provider, ready=tiers, eks=eks)


def _onprem(name: str, cluster: Cluster, onprem: OnPremSettings) -> ProvisionedCluster:
    kubeconfig: pulumi.Output[str] | None = None
    if onprem.kubeconfig_secret:
        namespace, key = onprem.kubeconfig_secret.split(":", 1)
        kubeconfig = pulumi.Config(namespace).require_secret(key)
    component = OnPremCluster(
        name,
        OnPremClusterArgs(
            tiers=tuple(
                TierNodes(
                    tier=tier_name,
                    isa=tier.isa,
                    node_names=tuple(tier.node_names),
                    kind=tier.kind,
                )
                for tier_name, tier in cluster.tiers.items()
            ),
            kubeconfig=kubeconfig,
            context=cluster.kubeconfig.context,
            node_feature_discovery_version=(
                _versions(cluster).node_feature_discovery if onprem.node_feature_discovery else None
            ),
            metallb=onprem.metallb,
            metallb_version=_versions(cluster).metallb,
        ),
    )
    return ProvisionedCluster(
        name=name, settings=cluster, provider=component.provider, ready=(component,)
    )


def _versions(cluster: Cluster) -> ChartVersions:
    return cluster.addons.versions if cluster.addons else ChartVersions()


def _addons_args(cluster: Cluster, eks: EksCluster | None) -> ClusterAddonsArgs:
    assert cluster.addons is not None
    return ClusterAddonsArgs(
        # The settings section is the component's config.
        config=cluster.addons,
        gpu_nodes=any(tier.kind == "gpu" for tier in cluster.tiers.values()),
        monitoring_namespace=cluster.monitoring_namespace,
        eks=eks,
    )
