"""The cluster-specific parts of a stack's settings: EKS, on-prem, add-ons, load balancer.

They hang off `Cluster` in `llamafleet.settings.schema` (which imports this module, not the
reverse); cross-field rules over them live in `llamafleet.settings.rules`.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, StringConstraints

from llamafleet.components.config import ComponentConfig as Strict
from llamafleet.components.config import DnsName, Ipv4Address, Ipv4Cidr
from llamafleet.components.eks_cluster import EksClusterConfig
from llamafleet.components.gateway import GatewayTls
from llamafleet.components.onprem_cluster import MetalLbConfig

Cidr = Ipv4Cidr
ConfigKey = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_-]+:[A-Za-z0-9_.-]+$")]


class EksSettings(EksClusterConfig):
    """`llamafleet:clusters.<name>.eks`: the EksCluster's config (required on `kind: eks`,
    refused on `kind: existing`) plus what the stack's node groups share."""

    node_root_volume_gib: int = Field(
        default=100,
        ge=20,
        le=4096,
        description="Encrypted root volume per node, GiB; holds the node-local model cache.",
    )


class OnPremSettings(Strict):
    """`llamafleet:clusters.<name>.onprem`: how the stack prepares a `kind: existing`
    cluster: its kubeconfig, tier labels on the named nodes, Node Feature Discovery, MetalLB."""

    kubeconfig_secret: ConfigKey | None = Field(
        default=None,
        description="Secret Pulumi config key holding the kubeconfig (`pulumi config set "
        "--secret <ns:key>`, outside the llamafleet namespace); default: the kubeconfig file.",
    )
    node_feature_discovery: bool = Field(
        default=True, description="Install Node Feature Discovery (real CPU flags as labels)."
    )
    metallb: MetalLbConfig | None = Field(
        default=None, description="MetalLB address pool for LoadBalancer Services."
    )


class LoadBalancerSettings(Strict):
    """`llamafleet:clusters.<name>.loadBalancer`: how the gateway's LoadBalancer Service
    is exposed: an NLB on EKS, a MetalLB address on-prem."""

    type: Literal["LoadBalancer", "ClusterIP"] = Field(
        default="LoadBalancer",
        description="ClusterIP: no load balancer (a cluster without one, e.g. the local control "
        "plane); the gateway is then reached inside the cluster only.",
    )
    scheme: Literal["internal", "internet-facing"] = Field(
        default="internal", description="EKS: NLB scheme."
    )
    address: Ipv4Address | None = Field(
        default=None, description="On-prem: a fixed address from the MetalLB pool."
    )
    source_ranges: list[Cidr] = Field(
        default_factory=list[str], description="Client CIDRs allowed through the LB; empty: all."
    )
    hostname: DnsName | None = Field(
        default=None,
        description="The DNS name clients and the other clusters' gateways reach the gateway by "
        "(pointing at the load balancer; the TLS certificate covers it). Needed where another "
        "cluster also serves the stack's models: each gateway routes every team's models, "
        "the other cluster's tiers through that cluster's gateway.",
    )
    tls: GatewayTls | None = Field(
        default=None,
        description="TLS for the gateway's endpoint: certificateArn on EKS (the NLB), "
        "secretName or certManager on-prem (the gateway); absent only with type ClusterIP.",
    )
