"""The cluster-specific parts of a stack's settings: EKS, on-prem, add-ons, load balancer.

They hang off `Cluster` in `infra.schema` (which imports this module, not the reverse);
cross-field rules over them live in `infra.rules`.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, StringConstraints

from components.config import AddressRange, Ipv4Address, Ipv4Cidr
from components.config import ComponentConfig as Strict
from infra.settings_types import Name

Cidr = Ipv4Cidr
# A Linux network interface name: at most 15 bytes (IFNAMSIZ 16 with the NUL), no '/' or space.
InterfaceName = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_.:@-]{1,15}$")]
# Exact chart versions only: a range or "latest" would change what runs without a review.
ChartVersion = Annotated[str, StringConstraints(pattern=r"^v?\d+\.\d+\.\d+$")]
ConfigKey = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_-]+:[A-Za-z0-9_.-]+$")]
IamArn = Annotated[str, StringConstraints(pattern=r"^arn:aws[a-z-]*:(iam|sts)::\d{12}:\S+$")]
Zone = Annotated[str, StringConstraints(pattern=r"^[a-z]{2}(-[a-z]+)+-\d[a-z]$")]


class EksSettings(Strict):
    """`llamafleet:clusters.<name>.eks`: the VPC, control plane and nodes a `kind: eks`
    cluster is created with (required there, refused on `kind: existing`)."""

    kubernetes_version: Annotated[str, StringConstraints(pattern=r"^1\.\d{2}$")] = Field(
        default="1.33", description="EKS control plane version (minor), e.g. 1.33."
    )
    vpc_cidr: Cidr = Field(default="10.40.0.0/16", description="The cluster VPC's CIDR block.")
    availability_zones: list[Zone] = Field(
        min_length=2,
        max_length=6,
        description="Zones for one private (nodes) and one public (NAT, LB) subnet each.",
    )
    nat_gateways: Literal["single", "per-zone"] = Field(
        default="per-zone",
        description="per-zone survives a zone outage; single is cheaper (dev).",
    )
    public_endpoint: bool = Field(
        default=False,
        description="Expose the API server publicly; off: reachable from the VPC only, so "
        "`pulumi up` must run from inside it.",
    )
    public_access_cidrs: list[Cidr] = Field(
        default_factory=list[str],
        description="Who may reach the public endpoint (required when publicEndpoint is on).",
    )
    admin_principals: list[IamArn] = Field(
        default_factory=list[str],
        description="IAM roles/users given cluster-admin through EKS access entries.",
    )
    node_root_volume_gib: int = Field(
        default=100,
        ge=20,
        le=4096,
        description="Encrypted root volume per node; holds the node-local model cache.",
    )
    log_types: list[Literal["api", "audit", "authenticator", "controllerManager", "scheduler"]] = (
        Field(
            default_factory=lambda: ["api", "audit", "authenticator"],
            description="Control plane logs sent to CloudWatch.",
        )
    )
    protect: bool = Field(
        default=True,
        description="Pulumi `protect` on the cluster and its Secrets key: `destroy` stops "
        "instead of deleting them (README: protected resources).",
    )


class MetalLbSettings(Strict):
    """`llamafleet:clusters.<name>.onprem.metallb`: the MetalLB address pool that
    LoadBalancer Services get addresses from, and whether the stack installs MetalLB."""

    install: bool = Field(
        default=False, description="Install MetalLB itself; false: the cluster already runs it."
    )
    namespace: Name = Field(default="metallb-system", description="MetalLB's namespace.")
    pool: Name = Field(default="llamafleet", description="Name of the IPAddressPool.")
    addresses: list[AddressRange] = Field(
        min_length=1, description="Addresses the pool hands out: CIDRs or first-last ranges."
    )
    interfaces: list[InterfaceName] = Field(
        default_factory=list[str],
        description="Node interfaces that announce the addresses (L2); empty: all.",
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
    metallb: MetalLbSettings | None = Field(
        default=None, description="MetalLB address pool for LoadBalancer Services."
    )


class ChartVersions(Strict):
    """`llamafleet:clusters.<name>.addons.versions`: the exact Helm chart version of each
    add-on, and of on-prem's Node Feature Discovery and MetalLB (the defaults if no `addons`)."""

    keda: ChartVersion = Field(default="2.16.1", description="kedacore/keda.")
    kube_prometheus_stack: ChartVersion = Field(
        default="69.8.0", description="prometheus-community/kube-prometheus-stack."
    )
    cluster_autoscaler: ChartVersion = Field(
        default="9.46.6", description="kubernetes/autoscaler cluster-autoscaler."
    )
    nvidia_device_plugin: ChartVersion = Field(
        default="0.17.1", description="nvidia/nvidia-device-plugin."
    )
    metrics_server: ChartVersion = Field(
        default="3.12.2", description="kubernetes-sigs/metrics-server."
    )
    node_feature_discovery: ChartVersion = Field(
        default="0.17.2", description="kubernetes-sigs/node-feature-discovery."
    )
    metallb: ChartVersion = Field(default="0.14.9", description="metallb/metallb.")
    aws_load_balancer_controller: ChartVersion = Field(
        default="1.11.0", description="eks/aws-load-balancer-controller."
    )


class AddonSettings(Strict):
    """`llamafleet:clusters.<name>.addons`: the Helm add-ons the stack installs on the
    cluster (the NVIDIA device plugin only where the cluster has a gpu tier)."""

    keda: bool = Field(default=True, description="Install KEDA (scales pods on the queue).")
    prometheus: Literal["install", "existing"] = Field(
        default="install",
        description="install kube-prometheus-stack, or use the cluster's (see prometheusUrl).",
    )
    metrics_server: bool = Field(default=True, description="Install metrics-server (HPA on CPU).")
    cluster_autoscaler: bool = Field(
        default=True, description="Install cluster-autoscaler with IRSA (EKS only)."
    )
    nvidia_device_plugin: bool = Field(
        default=True, description="Install the NVIDIA device plugin on the GPU tiers."
    )
    aws_load_balancer_controller: bool = Field(
        default=True,
        description="Install the AWS Load Balancer Controller with IRSA (EKS only; it makes "
        "the NLBs).",
    )
    versions: ChartVersions = Field(
        default_factory=ChartVersions, description="Helm chart versions, exact."
    )


class LoadBalancerSettings(Strict):
    """`llamafleet:clusters.<name>.loadBalancer`: how the gateway's LoadBalancer Service
    is exposed: an NLB on EKS, a MetalLB address on-prem."""

    scheme: Literal["internal", "internet-facing"] = Field(
        default="internal", description="EKS: NLB scheme."
    )
    address: Ipv4Address | None = Field(
        default=None, description="On-prem: a fixed address from the MetalLB pool."
    )
    source_ranges: list[Cidr] = Field(
        default_factory=list[str], description="Client CIDRs allowed through the LB; empty: all."
    )
