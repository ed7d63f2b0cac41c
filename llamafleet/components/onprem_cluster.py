"""OnPremCluster: an existing cluster reached by kubeconfig, prepared for the fleet.

Named nodes get their tier and ISA labels through server-side-apply patches (the stack owns only
those label keys; kubelet and others keep theirs), Node Feature Discovery labels what each CPU
really supports, and MetalLB gets the address pool LoadBalancer Services draw from.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Literal

import pulumi
import pulumi_kubernetes as k8s
from pydantic import Field, StringConstraints

from llamafleet.components.cluster_addons import chart, helm_release
from llamafleet.components.config import AddressRange, ComponentConfig, KubernetesName
from llamafleet.components.kube_provider import kubernetes_provider
from llamafleet.components.labels import tier_node_labels
from llamafleet.components.manifest import manifest

METALLB_API = "metallb.io/v1beta1"
# A Linux network interface name: at most 15 bytes (IFNAMSIZ 16 with the NUL), no '/' or space.
InterfaceName = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_.:@-]{1,15}$")]


@dataclass(frozen=True)
class TierNodes:
    """The existing nodes that form one tier.

    Attributes:
        tier: Tier name, the `llamafleet.io/tier` node label.
        isa: Newest x86 level every node supports, the `llamafleet.io/isa` label.
        node_names: Names of the Kubernetes Nodes to label.
        kind: cpu, or gpu: the nodes also get `llamafleet.io/accelerator: nvidia`, where the
            NVIDIA device plugin runs (labels.tier_node_labels).
    """

    tier: str
    isa: str
    node_names: tuple[str, ...]
    kind: Literal["cpu", "gpu"] = "cpu"


class MetalLbConfig(ComponentConfig):
    """MetalLB's address pool and L2 advertisement, and whether the stack installs MetalLB
    itself (`llamafleet:clusters.<name>.onprem.metallb` in a stack's settings)."""

    install: bool = Field(
        default=False,
        description="Install MetalLB (at OnPremClusterArgs.metallb_version); false: the "
        "cluster already runs it.",
    )
    namespace: KubernetesName = Field(
        default="metallb-system",
        description="MetalLB's namespace (when installed here) and the pool's.",
    )
    pool: KubernetesName = Field(
        default="llamafleet",
        description="Name of the IPAddressPool; not auto-assigned: only Services that name "
        "it get its addresses.",
    )
    addresses: list[AddressRange] = Field(
        min_length=1,
        description="Addresses the pool hands out: IPv4 CIDRs or first-last ranges (MetalLB "
        "pool syntax).",
    )
    interfaces: list[InterfaceName] = Field(
        default_factory=list[str],
        description="Node interfaces the L2Advertisement announces on; empty: all of them.",
    )


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
    metallb: MetalLbConfig | None = None
    # MetalLB chart version, installed where `metallb.install` is on.
    metallb_version: str | None = None


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
                        {"name": node, "labels": tier_node_labels(tier.tier, tier.isa, tier.kind)}
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
            self._metallb(args.metallb, args.metallb_version if args.metallb.install else None)
        self.register_outputs({"tiers": [tier.tier for tier in args.tiers]})

    def _metallb(self, args: MetalLbConfig, install_version: str | None) -> None:
        name = self._name
        after: list[pulumi.Resource] = []
        if install_version:
            after.append(
                helm_release(
                    f"{name}-metallb",
                    chart("metallb", install_version),
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
