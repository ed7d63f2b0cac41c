"""NodeTier: one EKS managed node group per tier.

Nodes carry the tier and ISA labels the pods select on, and GPU nodes a taint only GPU pods
tolerate. The autoscaler owns the node count after creation. Nodes get IMDSv2 with a hop limit of 1
(pods cannot borrow the node's role), an encrypted root volume, and an IAM role with only what a
node needs plus read access to the models bucket.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import pulumi
import pulumi_aws as aws

from llamafleet.components.eks_cluster import MANAGED_POLICY, assume_role_policy
from llamafleet.components.labels import GPU_TAINT_KEY, TIER_LABEL, tier_node_labels

# Nodes pull images and join the cluster; the CNI's permissions live on its own IRSA role.
NODE_POLICIES = ("AmazonEKSWorkerNodePolicy", "AmazonEC2ContainerRegistryPullOnly")
AMI_TYPES = {"cpu": "AL2023_x86_64_STANDARD", "gpu": "AL2023_x86_64_NVIDIA"}
ROOT_DEVICE = "/dev/xvda"  # AL2023's root volume

# Suffixes of the names the node role and node group are autonamed from (llamafleet.settings.names
# checks the full names against the AWS limits).
NODE_ROLE_SUFFIX = "-node"
NODE_GROUP_SUFFIX = "-nodes"


@dataclass(frozen=True)
class NodeTierArgs:
    """One tier's EKS managed node group.

    Attributes:
        cluster_name: The EKS cluster the nodes join.
        subnet_ids: Subnets the nodes are placed in.
        tier: Tier name, the `llamafleet.io/tier` node label.
        kind: cpu, or gpu: the AL2023 NVIDIA AMI, the `llamafleet.io/accelerator=nvidia` label and
            a `nvidia.com/gpu` NoSchedule taint.
        isa: Newest x86 level every instance type supports, the `llamafleet.io/isa` label.
        instance_types: EC2 instance types of the group.
        min_size: Fewest nodes.
        max_size: Most nodes.
        desired_size: Nodes at creation; cluster-autoscaler owns the count after.
        models_read_policy_arn: IAM policy for reading the model store, attached to the nodes;
            None (default): none (an on-prem store, read with its key pair).
        capacity_type: on-demand (default) or spot.
        root_volume_gib: Size of the encrypted gp3 root volume, GiB (default 100).
    """

    cluster_name: pulumi.Input[str]
    subnet_ids: pulumi.Input[list[str]]
    tier: str
    kind: Literal["cpu", "gpu"]
    isa: str
    instance_types: tuple[str, ...]
    min_size: int
    max_size: int
    desired_size: int
    models_read_policy_arn: pulumi.Input[str] | None = None
    capacity_type: Literal["on-demand", "spot"] = "on-demand"
    root_volume_gib: int = 100


def node_labels(args: NodeTierArgs) -> dict[str, str]:
    """The tier's node labels: tier and ISA, plus `llamafleet.io/accelerator: nvidia` on gpu
    tiers."""
    return tier_node_labels(args.tier, args.isa, args.kind)


def _store_policy(args: NodeTierArgs) -> list[pulumi.Input[str]]:
    return [] if args.models_read_policy_arn is None else [args.models_read_policy_arn]


class NodeTier(pulumi.ComponentResource):
    """An EKS managed node group (`node_group`), its node IAM role (`role`) and launch template:
    IMDSv2 only with a hop limit of 1, an encrypted gp3 root volume, and updates that take one
    node away at a time."""

    node_group: aws.eks.NodeGroup
    role: aws.iam.Role

    def __init__(
        self, name: str, args: NodeTierArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__("llamafleet:cluster:NodeTier", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        tags = {TIER_LABEL: args.tier}
        self.role = aws.iam.Role(
            f"{name}{NODE_ROLE_SUFFIX}",
            assume_role_policy=assume_role_policy("ec2.amazonaws.com"),
            tags=tags,
            opts=child,
        )
        policies: list[pulumi.Input[str]] = [
            f"{MANAGED_POLICY}{policy}" for policy in NODE_POLICIES
        ]
        attachments = [
            aws.iam.RolePolicyAttachment(
                f"{name}-node-{index}", role=self.role.name, policy_arn=arn, opts=child
            )
            for index, arn in enumerate(policies + _store_policy(args))
        ]
        template = aws.ec2.LaunchTemplate(
            f"{name}-nodes",
            metadata_options=aws.ec2.LaunchTemplateMetadataOptionsArgs(
                http_endpoint="enabled",
                http_tokens="required",
                http_put_response_hop_limit=1,
            ),
            block_device_mappings=[
                aws.ec2.LaunchTemplateBlockDeviceMappingArgs(
                    device_name=ROOT_DEVICE,
                    ebs=aws.ec2.LaunchTemplateBlockDeviceMappingEbsArgs(
                        volume_size=args.root_volume_gib,
                        volume_type="gp3",
                        encrypted="true",
                        delete_on_termination="true",
                    ),
                )
            ],
            update_default_version=True,
            tags=tags,
            opts=child,
        )
        self.node_group = aws.eks.NodeGroup(
            f"{name}{NODE_GROUP_SUFFIX}",
            cluster_name=args.cluster_name,
            node_role_arn=self.role.arn,
            subnet_ids=args.subnet_ids,
            instance_types=list(args.instance_types),
            capacity_type=args.capacity_type.upper().replace("-", "_"),
            ami_type=AMI_TYPES[args.kind],
            scaling_config=aws.eks.NodeGroupScalingConfigArgs(
                min_size=args.min_size, max_size=args.max_size, desired_size=args.desired_size
            ),
            labels=node_labels(args),
            taints=[
                aws.eks.NodeGroupTaintArgs(key=GPU_TAINT_KEY, value="present", effect="NO_SCHEDULE")
            ]
            if args.kind == "gpu"
            else None,
            launch_template=aws.eks.NodeGroupLaunchTemplateArgs(
                id=template.id, version=template.latest_version.apply(str)
            ),
            update_config=aws.eks.NodeGroupUpdateConfigArgs(max_unavailable=1),
            tags=tags,
            # cluster-autoscaler changes the desired size; a later `up` must not reset it.
            opts=pulumi.ResourceOptions(
                parent=self,
                depends_on=attachments,
                ignore_changes=["scalingConfig.desiredSize"],
            ),
        )
        self.register_outputs({"nodeGroup": self.node_group.node_group_name, "role": self.role.arn})
