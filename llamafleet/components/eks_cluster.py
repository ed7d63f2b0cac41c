"""EksCluster: the VPC, the EKS control plane and its identity plumbing.

Private subnets (nodes, internal load balancers) and public subnets (NAT, internet-facing load
balancers) in each zone; the API server private unless asked otherwise; Kubernetes Secrets
envelope-encrypted with a KMS key of the stack; an OIDC provider so pods get IAM roles (IRSA);
EKS access entries instead of the aws-auth ConfigMap. Node groups are `NodeTier`s.
"""

from __future__ import annotations

import ipaddress
import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Annotated, Any, Literal

import pulumi
import pulumi_aws as aws
from pydantic import Field, StringConstraints, ValidationInfo, field_validator

from llamafleet.components.config import (
    AvailabilityZone,
    AwsTagKey,
    AwsTagValue,
    ComponentConfig,
    IamArn,
    Ipv4Cidr,
)

ADMIN_POLICY = "arn:aws:eks::aws:cluster-access-policy/AmazonEKSClusterAdminPolicy"
MANAGED_POLICY = "arn:aws:iam::aws:policy/"


class EksClusterConfig(ComponentConfig):
    """One EKS cluster and its VPC (`llamafleet:clusters.<name>.eks` in a stack's settings).

    Raises:
        pydantic.ValidationError: a field is out of its range, or `public_endpoint` is on with
            no `public_access_cidrs`.
    """

    kubernetes_version: Annotated[str, StringConstraints(pattern=r"^1\.\d{2}$")] = Field(
        default="1.33", description="EKS control plane version (MAJOR.MINOR), e.g. 1.33."
    )
    vpc_cidr: Ipv4Cidr = Field(
        default="10.40.0.0/16",
        description="The cluster VPC's IPv4 CIDR block, cut into subnets by `subnet_cidrs`.",
    )
    availability_zones: list[AvailabilityZone] = Field(
        min_length=2,
        max_length=6,
        description="Zones for one private (nodes) and one public (NAT, LB) subnet each; EKS "
        "needs subnets in at least two.",
    )
    nat_gateways: Literal["single", "per-zone"] = Field(
        default="per-zone",
        description="per-zone: a NAT gateway in each zone, survives a zone outage; single: one, "
        "in the first zone, for every zone (cheaper, dev).",
    )
    public_endpoint: bool = Field(
        default=False,
        description="Also expose the API server publicly (the private endpoint is always on); "
        "off: reachable from the VPC only, so `pulumi up` must run from inside it.",
    )
    public_access_cidrs: list[Ipv4Cidr] = Field(
        default_factory=list[str],
        validate_default=True,
        description="Who may reach the public endpoint (required when publicEndpoint is on).",
    )
    admin_principals: list[IamArn] = Field(
        default_factory=list[str],
        description="IAM role/user ARNs made cluster admins (EKS access entries, "
        "AmazonEKSClusterAdminPolicy).",
    )
    log_types: list[Literal["api", "audit", "authenticator", "controllerManager", "scheduler"]] = (
        Field(
            default_factory=lambda: ["api", "audit", "authenticator"],
            description="Control plane log types EKS sends to CloudWatch Logs.",
        )
    )
    tags: dict[AwsTagKey, AwsTagValue] = Field(
        default_factory=dict[str, str],
        description="Extra AWS tags on the network, the KMS key, the control plane role, the "
        "cluster and the OIDC provider (`llamafleet.io/cluster` is always set).",
    )
    protect: bool = Field(
        default=True,
        description="Pulumi `protect` on the cluster and its Secrets key: `destroy` or a "
        "replacement stops instead of deleting every workload and scheduling the key (and "
        "the Secrets) for deletion (README: protected resources).",
    )

    @field_validator("public_access_cidrs")
    @classmethod
    def _cidrs_for_a_public_endpoint(cls, value: list[str], info: ValidationInfo) -> list[str]:
        if info.data.get("public_endpoint") and not value:
            raise ValueError("publicEndpoint is on: list the CIDRs that may reach it")
        return value


@dataclass(frozen=True)
class Oidc:
    """What an IRSA trust policy needs: the provider's ARN and the issuer (without https://)."""

    provider_arn: pulumi.Output[str]
    issuer: pulumi.Output[str]


def subnet_cidrs(vpc_cidr: str, zones: int) -> tuple[list[str], list[str]]:
    """Large private subnets (pods take VPC addresses) and small public ones (NAT, LB only)."""
    network = ipaddress.ip_network(vpc_cidr)
    blocks = list(network.subnets(prefixlen_diff=3))
    private = [str(block) for block in blocks[:zones]]
    public = [str(block) for block in blocks[-1].subnets(prefixlen_diff=3)][:zones]
    return private, public


def assume_role_policy(service: str) -> str:
    """A trust policy (JSON) that lets AWS service principal `service` (e.g. ec2.amazonaws.com)
    assume the role and tag its session."""
    return json.dumps(
        {
            "Version": "2012-10-17",
            "Statement": [
                {
                    "Effect": "Allow",
                    "Principal": {"Service": service},
                    "Action": ["sts:AssumeRole", "sts:TagSession"],
                }
            ],
        }
    )


def irsa_role(
    name: str, oidc: Oidc, namespace: str, service_account: str, opts: pulumi.ResourceOptions
) -> aws.iam.Role:
    """A role only `namespace/service_account` of this cluster can assume."""

    def trust(args: list[str]) -> str:
        provider_arn, issuer = args
        return json.dumps(
            {
                "Version": "2012-10-17",
                "Statement": [
                    {
                        "Effect": "Allow",
                        "Principal": {"Federated": provider_arn},
                        "Action": "sts:AssumeRoleWithWebIdentity",
                        "Condition": {
                            "StringEquals": {
                                f"{issuer}:sub": f"system:serviceaccount:{namespace}:"
                                f"{service_account}",
                                f"{issuer}:aud": "sts.amazonaws.com",
                            }
                        },
                    }
                ],
            }
        )

    policy = pulumi.Output.all(oidc.provider_arn, oidc.issuer).apply(trust)
    return aws.iam.Role(name, assume_role_policy=policy, opts=opts)


def service_account_role(
    name: str,
    oidc: Oidc,
    *,
    namespace: str,
    service_account: str,
    policy_arn: pulumi.Input[str],
    opts: pulumi.ResourceOptions,
) -> aws.iam.Role:
    """An IRSA role with one policy: how pods get AWS access (IMDSv2's hop limit of 1 keeps them
    off the node's role). Its ARN goes in the service account's `eks.amazonaws.com/role-arn`."""
    role = irsa_role(name, oidc, namespace, service_account, opts)
    aws.iam.RolePolicyAttachment(name, role=role.name, policy_arn=policy_arn, opts=opts)
    return role


class EksCluster(pulumi.ComponentResource):
    """An EKS cluster with its VPC, Secrets KMS key, OIDC provider (IRSA), admin access entries
    and the vpc-cni add-on on its own IRSA role.

    Outputs: `cluster`, `vpc_id`, `private_subnet_ids` (one per zone, for node groups), `region`
    (from the cluster's ARN), `oidc`, and `kubeconfig` (a secret; see `kubeconfig`).
    """

    cluster: aws.eks.Cluster
    vpc_id: pulumi.Output[str]
    private_subnet_ids: pulumi.Output[list[str]]
    region: pulumi.Output[str]
    kubernetes_version: str
    oidc: Oidc
    kubeconfig: pulumi.Output[str]

    def __init__(
        self,
        name: str,
        config: EksClusterConfig,
        opts: pulumi.ResourceOptions | None = None,
        *,
        cluster_name: str | None = None,
    ) -> None:
        """`cluster_name`: the EKS cluster's name, fixed, not autonamed (kubeconfigs, IRSA
        trust and the autoscaler's tags name it); default: `name`."""
        super().__init__("llamafleet:cluster:EksCluster", name, None, opts)
        self._name = name
        self._cluster_name = cluster_name or name
        self._config = config
        self.kubernetes_version = config.kubernetes_version
        self._tags = {"llamafleet.io/cluster": name, **config.tags}
        child = pulumi.ResourceOptions(parent=self)

        private_ids = self._network()
        key = aws.kms.Key(
            f"{name}-secrets-key",
            description=f"{name}: envelope encryption of Kubernetes Secrets",
            enable_key_rotation=True,
            deletion_window_in_days=30,
            tags=self._tags,
            opts=pulumi.ResourceOptions(parent=self, protect=config.protect),
        )
        role = aws.iam.Role(
            f"{name}-control-plane",
            assume_role_policy=assume_role_policy("eks.amazonaws.com"),
            tags=self._tags,
            opts=child,
        )
        attachment = aws.iam.RolePolicyAttachment(
            f"{name}-control-plane-policy",
            role=role.name,
            policy_arn=f"{MANAGED_POLICY}AmazonEKSClusterPolicy",
            opts=child,
        )
        self.cluster = aws.eks.Cluster(
            f"{name}-eks",
            name=self._cluster_name,
            role_arn=role.arn,
            version=config.kubernetes_version,
            vpc_config=aws.eks.ClusterVpcConfigArgs(
                subnet_ids=private_ids,
                endpoint_private_access=True,
                endpoint_public_access=config.public_endpoint,
                public_access_cidrs=list(config.public_access_cidrs) or None,
            ),
            encryption_config=aws.eks.ClusterEncryptionConfigArgs(
                provider=aws.eks.ClusterEncryptionConfigProviderArgs(key_arn=key.arn),
                resources=["secrets"],
            ),
            access_config=aws.eks.ClusterAccessConfigArgs(
                authentication_mode="API",
                # The identity running `pulumi up` installs the add-ons in the same run; it shows
                # up as an access entry that can be removed once adminPrincipals are in place.
                bootstrap_cluster_creator_admin_permissions=True,
            ),
            enabled_cluster_log_types=list(config.log_types),
            tags=self._tags,
            opts=pulumi.ResourceOptions(
                parent=self, depends_on=[attachment], protect=config.protect
            ),
        )
        self.private_subnet_ids = private_ids
        self.region = self.cluster.arn.apply(_region)
        self.oidc = self._oidc()
        self._admins()
        self._vpc_cni()
        self.kubeconfig = pulumi.Output.secret(
            pulumi.Output.all(
                self.cluster.name,
                self.cluster.endpoint,
                self.cluster.certificate_authority.apply(lambda ca: ca.data if ca else None),
                self.cluster.arn,
            ).apply(kubeconfig)
        )
        self.register_outputs(
            {
                "clusterName": self.cluster.name,
                "kubeconfig": self.kubeconfig,
                "oidcProviderArn": self.oidc.provider_arn,
            }
        )

    def _network(self) -> pulumi.Output[list[str]]:
        name, config = self._name, self._config
        child = pulumi.ResourceOptions(parent=self)
        vpc = aws.ec2.Vpc(
            f"{name}-vpc",
            cidr_block=config.vpc_cidr,
            enable_dns_hostnames=True,
            enable_dns_support=True,
            tags={**self._tags, "Name": name},
            opts=child,
        )
        self.vpc_id = vpc.id
        gateway = aws.ec2.InternetGateway(f"{name}-igw", vpc_id=vpc.id, tags=self._tags, opts=child)
        public_routes = aws.ec2.RouteTable(
            f"{name}-public",
            vpc_id=vpc.id,
            routes=[aws.ec2.RouteTableRouteArgs(cidr_block="0.0.0.0/0", gateway_id=gateway.id)],
            tags=self._tags,
            opts=child,
        )
        private_cidrs, public_cidrs = subnet_cidrs(config.vpc_cidr, len(config.availability_zones))
        nats: list[aws.ec2.NatGateway] = []
        private_ids: list[pulumi.Output[str]] = []
        for index, zone in enumerate(config.availability_zones):
            public = self._subnet(vpc, zone, public_cidrs[index], "public", public_routes.id)
            if config.nat_gateways == "per-zone" or not nats:
                address = aws.ec2.Eip(
                    f"{name}-nat-{zone}", domain="vpc", tags=self._tags, opts=child
                )
                nats.append(
                    aws.ec2.NatGateway(
                        f"{name}-nat-{zone}",
                        allocation_id=address.id,
                        subnet_id=public.id,
                        tags=self._tags,
                        opts=pulumi.ResourceOptions(parent=self, depends_on=[gateway]),
                    )
                )
            routes = aws.ec2.RouteTable(
                f"{name}-private-{zone}",
                vpc_id=vpc.id,
                routes=[
                    aws.ec2.RouteTableRouteArgs(cidr_block="0.0.0.0/0", nat_gateway_id=nats[-1].id)
                ],
                tags=self._tags,
                opts=child,
            )
            private = self._subnet(vpc, zone, private_cidrs[index], "private", routes.id)
            private_ids.append(private.id)
        return pulumi.Output.all(*private_ids)

    def _subnet(
        self,
        vpc: aws.ec2.Vpc,
        zone: str,
        cidr: str,
        role: Literal["public", "private"],
        route_table_id: pulumi.Input[str],
    ) -> aws.ec2.Subnet:
        child = pulumi.ResourceOptions(parent=self)
        # The AWS Load Balancer Controller places internet-facing/internal LBs by these tags.
        elb_role = (
            "kubernetes.io/role/elb" if role == "public" else "kubernetes.io/role/internal-elb"
        )
        subnet = aws.ec2.Subnet(
            f"{self._name}-{role}-{zone}",
            vpc_id=vpc.id,
            availability_zone=zone,
            cidr_block=cidr,
            map_public_ip_on_launch=False,
            tags={**self._tags, "Name": f"{self._name}-{role}-{zone}", elb_role: "1"},
            opts=child,
        )
        aws.ec2.RouteTableAssociation(
            f"{self._name}-{role}-{zone}",
            subnet_id=subnet.id,
            route_table_id=route_table_id,
            opts=child,
        )
        return subnet

    def _oidc(self) -> Oidc:
        issuer_url = self.cluster.identities.apply(_issuer)
        provider = aws.iam.OpenIdConnectProvider(
            f"{self._name}-oidc",
            url=issuer_url,
            client_id_lists=["sts.amazonaws.com"],
            tags=self._tags,
            opts=pulumi.ResourceOptions(parent=self),
        )
        return Oidc(
            provider_arn=provider.arn, issuer=issuer_url.apply(lambda u: u.removeprefix("https://"))
        )

    def _admins(self) -> None:
        for index, principal in enumerate(self._config.admin_principals):
            entry = aws.eks.AccessEntry(
                f"{self._name}-admin-{index}",
                cluster_name=self.cluster.name,
                principal_arn=principal,
                type="STANDARD",
                opts=pulumi.ResourceOptions(parent=self),
            )
            aws.eks.AccessPolicyAssociation(
                f"{self._name}-admin-{index}",
                cluster_name=self.cluster.name,
                principal_arn=principal,
                policy_arn=ADMIN_POLICY,
                access_scope=aws.eks.AccessPolicyAssociationAccessScopeArgs(type="cluster"),
                opts=pulumi.ResourceOptions(parent=self, depends_on=[entry]),
            )

    def _vpc_cni(self) -> None:
        # The CNI's EC2 permissions go to its own service account, not to every node.
        role = irsa_role(
            f"{self._name}-vpc-cni",
            self.oidc,
            "kube-system",
            "aws-node",
            pulumi.ResourceOptions(parent=self),
        )
        attachment = aws.iam.RolePolicyAttachment(
            f"{self._name}-vpc-cni",
            role=role.name,
            policy_arn=f"{MANAGED_POLICY}AmazonEKS_CNI_Policy",
            opts=pulumi.ResourceOptions(parent=self),
        )
        aws.eks.Addon(
            f"{self._name}-vpc-cni",
            cluster_name=self.cluster.name,
            addon_name="vpc-cni",
            service_account_role_arn=role.arn,
            resolve_conflicts_on_create="OVERWRITE",
            resolve_conflicts_on_update="PRESERVE",
            opts=pulumi.ResourceOptions(parent=self, depends_on=[attachment]),
        )


def _region(arn: str) -> str:
    return arn.split(":")[3]


def _issuer(identities: Sequence[aws.eks.outputs.ClusterIdentity]) -> str:
    oidcs = identities[0].oidcs if identities else None
    return (oidcs[0].issuer or "") if oidcs else ""


def kubeconfig(args: Sequence[Any]) -> str:
    """A kubeconfig that gets short-lived tokens from `aws eks get-token` (no static secret)."""
    name, endpoint, ca_data, arn = args
    region = _region(str(arn))
    user = {
        "exec": {
            "apiVersion": "client.authentication.k8s.io/v1beta1",
            "command": "aws",
            "args": ["eks", "get-token", "--cluster-name", name, "--region", region],
            "interactiveMode": "Never",
        }
    }
    return json.dumps(
        {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [
                {
                    "name": name,
                    "cluster": {"server": endpoint, "certificate-authority-data": ca_data},
                }
            ],
            "users": [{"name": name, "user": user}],
            "contexts": [{"name": name, "context": {"cluster": name, "user": name}}],
            "current-context": name,
        }
    )
