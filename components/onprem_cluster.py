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
from components.inference_pod import ISA_LABEL, TIER_LABEL
from components.kube_provider import kubernetes_provider
from components.manifest import manifest

METALLB_API = "metallb.io/v1beta1"


@dataclass(frozen=True)
class TierNodes:
    tier: str
    isa: str
    node_names: tuple[str, ...]


@dataclass(frozen=True)
class MetalLbArgs:
    addresses: tuple[str, ...]
    pool: str = "llamafleet"
    namespace: str = "metallb-system"
    interfaces: tuple[str, ...] = ()
    install_version: str | None = None  # None: the cluster already runs MetalLB


@dataclass(frozen=True)
class OnPremClusterArgs:
    tiers: tuple[TierNodes, ...]
    # The kubeconfig's contents (kept secret), or None for the file in $KUBECONFIG.
    kubeconfig: pulumi.Input[str] | None = None
    context: str | None = None
    node_feature_discovery_version: str | None = None
    metallb: MetalLbArgs | None = None


class OnPremCluster(pulumi.ComponentResource):
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
