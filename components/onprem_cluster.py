"""OnPremCluster: an existing cluster reached by kubeconfig, prepared for the fleet.

Named nodes get their tier and ISA labels through server-side-apply patches (the stack owns only
those label keys; kubelet and others keep theirs), Node Feature Discovery labels what each CPU
really supports, and MetalLB gets the address pool LoadBalancer Services draw from.
"""

from __future__ import annotations

from dataclasses import dataclass

import pulumi
import pulumi_kubernetes as k8s

from components.cluster_addons import chart, helm_release
from components.kube_provider import kubernetes_provider
from components.labels import ISA_LABEL, TIER_LABEL
from components.manifest import manifest

METALLB_API = "metallb.io/v1beta1"


@dataclass(frozen=True)
class TierNodes:
    """The existing nodes that form one tier.

    Attributes:
        tier: Tier name, the `llamafleet.io/tier` node label.
        isa: Newest x86 level every node supports, the `llamafleet.io/isa` label.
        node_names: Names of the Kubernetes Nodes to label.
    """

    tier: str
    isa: str
    node_names: tuple[str, ...]


@dataclass(frozen=True)
class MetalLbArgs:
    """MetalLB's address pool and L2 advertisement, and optionally MetalLB itself."""

    # CIDR blocks or first-last IPv4 ranges (MetalLB pool syntax).
    addresses: tuple[str, ...]
    # Not auto-assigned: only Services that name this pool get its addresses.
    pool: str = "llamafleet"
    # Of MetalLB (when installed here) and of the pool.
    namespace: str = "metallb-system"
    # Interfaces the L2Advertisement announces on; empty: all of them.
    interfaces: tuple[str, ...] = ()
    install_version: str | None = None  # None: the cluster already runs MetalLB


@dataclass(frozen=True)
class OnPremClusterArgs:
    """An existing cluster and what to prepare in it."""

    # The nodes to label, per tier.
    tiers: tuple[TierNodes, ...]
    # The kubeconfig's contents (kept secret), or None for the file in $KUBECONFIG.
    kubeconfig: pulumi.Input[str] | None = None
    # The kubeconfig context; None: its current context.
    context: str | None = None
    # Node Feature Discovery chart version to install; None: not installed.
    node_feature_discovery_version: str | None = None
    # None: no MetalLB pool is declared.
    metallb: MetalLbArgs | None = None


class OnPremCluster(pulumi.ComponentResource):
    """An existing cluster: its Kubernetes `provider` (`kubernetes_provider`), the tier labels
    on the named nodes and, when asked, Node Feature Discovery and a MetalLB pool."""

    provider: k8s.Provider

    def __init__(
        self, name: str, args: OnPremClusterArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__("llamafleet:cluster:OnPremCluster", name, None, opts)
        self._name = name
        self.provider = kubernetes_provider(
            f"{name}-k8s",
            kubeconfig=pulumi.Output.secret(args.kubeconfig) if args.kubeconfig else None,
            context=args.context,
            opts=pulumi.ResourceOptions(parent=self),
        )
        self._in_cluster = pulumi.ResourceOptions(parent=self, provider=self.provider)
        for tier in args.tiers:
            for node in tier.node_names:
                k8s.core.v1.NodePatch(
                    f"{name}-node-{node}",
                    metadata=manifest(
                        {"name": node, "labels": {TIER_LABEL: tier.tier, ISA_LABEL: tier.isa}}
                    ),
                    opts=self._in_cluster,
                )
        if args.node_feature_discovery_version:
            helm_release(
                f"{name}-node-feature-discovery",
                chart("node-feature-discovery", args.node_feature_discovery_version),
                "node-feature-discovery",
                {},
                self._in_cluster,
            )
        if args.metallb:
            self._metallb(args.metallb)
        self.register_outputs({"tiers": [tier.tier for tier in args.tiers]})

    def _metallb(self, args: MetalLbArgs) -> None:
        name = self._name
        after: list[pulumi.Resource] = []
        if args.install_version:
            after.append(
                helm_release(
                    f"{name}-metallb",
                    chart("metallb", args.install_version),
                    args.namespace,
                    {},
                    self._in_cluster,
                )
            )
        opts = pulumi.ResourceOptions(parent=self, provider=self.provider, depends_on=after)
        meta = {"name": args.pool, "namespace": args.namespace}
        # Services ask for this pool by name; no other Service gets its addresses by accident.
        pool = k8s.apiextensions.CustomResource(
            f"{name}-address-pool",
            api_version=METALLB_API,
            kind="IPAddressPool",
            metadata=manifest(meta),
            spec={"addresses": list(args.addresses), "autoAssign": False},
            opts=opts,
        )
        advertisement: dict[str, object] = {"ipAddressPools": [args.pool]}
        if args.interfaces:
            advertisement["interfaces"] = list(args.interfaces)
        k8s.apiextensions.CustomResource(
            f"{name}-l2-advertisement",
            api_version=METALLB_API,
            kind="L2Advertisement",
            metadata=manifest(meta),
            spec=advertisement,
            opts=pulumi.ResourceOptions(parent=self, provider=self.provider, depends_on=[pool]),
        )
