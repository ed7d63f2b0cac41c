"""EksCluster and NodeTier under mocks, for every stack with an EKS cluster."""

from __future__ import annotations

import json
from typing import Any

import pytest

from llamafleet.command.mock_run import run_program
from llamafleet.program.clusters import provision
from llamafleet.settings.load import load_stack_file, pulumi_settings, stack_file

from .conftest import (
    EKS_STACKS,
    MODELS_POLICY,
    children,
    declare,
    declared_stack,
    engine,
    of_type,
    stack_config,
)

NODE_GROUP = "aws:eks/nodeGroup:NodeGroup"
GPU_TAINT = {"key": "nvidia.com/gpu", "value": "present", "effect": "NO_SCHEDULE"}
MANAGED = "arn:aws:iam::aws:policy/"


def eks_tiers(stack: str) -> dict[str, Any]:
    settings = load_stack_file(stack_file(stack))
    return {
        name: tier
        for cluster in settings.clusters.values()
        if cluster.kind == "eks"
        for name, tier in cluster.tiers.items()
    }


@pytest.mark.parametrize("stack", EKS_STACKS)
def test_one_node_group_per_tier_with_its_labels_taints_ami_and_range(stack: str) -> None:
    groups = {
        g.inputs["labels"]["llamafleet.io/tier"]: g.inputs
        for g in of_type(declared_stack(stack), NODE_GROUP)
    }
    tiers = eks_tiers(stack)
    assert set(groups) == set(tiers)
    for name, tier in tiers.items():
        group = groups[name]
        assert group["labels"]["llamafleet.io/isa"] == tier.isa
        assert group["instanceTypes"] == tier.instance_types
        assert group["capacityType"] == tier.capacity_type.upper().replace("-", "_")
        scaling = group["scalingConfig"]
        assert (scaling["minSize"], scaling["maxSize"]) == (tier.nodes.min, tier.nodes.max)
        assert tier.nodes.min <= scaling["desiredSize"] <= tier.nodes.max
        if tier.kind == "gpu":
            assert group["amiType"] == "AL2023_x86_64_NVIDIA"
            assert group["taints"] == [GPU_TAINT]
        else:
            assert group["amiType"] == "AL2023_x86_64_STANDARD"
            assert "taints" not in group


def test_the_autoscaler_owns_the_desired_size() -> None:
    groups = of_type(declare(stack_config("prod")), NODE_GROUP)
    assert groups
    for group in groups:
        assert group.ignore_changes == ("scalingConfig.desiredSize",), group.name


def _policy_actions(document: str) -> list[str]:
    actions: list[str] = []
    for statement in json.loads(document)["Statement"]:
        action = statement["Action"]
        actions += [action] if isinstance(action, str) else action
    return actions


@pytest.mark.parametrize("stack", EKS_STACKS)
def test_nodes_get_the_node_policies_and_the_models_read_policy_only(stack: str) -> None:
    declared = declared_stack(stack)
    tiers = of_type(declared, "llamafleet:cluster:NodeTier")
    assert len(tiers) == len(eks_tiers(stack))
    for tier in tiers:
        own = children(declared, tier)
        attached = {
            a.inputs["policyArn"]
            for a in of_type(own, "aws:iam/rolePolicyAttachment:RolePolicyAttachment")
        }
        assert attached == {
            f"{MANAGED}AmazonEKSWorkerNodePolicy",
            f"{MANAGED}AmazonEC2ContainerRegistryPullOnly",
            MODELS_POLICY,
        }
        assert not of_type(own, "aws:iam/rolePolicy:RolePolicy")  # no inline grants
        (role,) = of_type(own, "aws:iam/role:Role")
        trust = json.loads(role.inputs["assumeRolePolicy"])["Statement"]
        assert [s["Principal"] for s in trust] == [{"Service": "ec2.amazonaws.com"}]


def test_without_a_store_policy_nodes_get_only_the_node_policies() -> None:
    """An on-prem store is read with its key pair: no IAM policy for a bucket of its name."""
    declared = declare(stack_config("aws-dev"), models_policy=None)
    assert of_type(declared, "aws:iam/policy:Policy") == []
    attached = {
        d.inputs["policyArn"]
        for d in of_type(declared, "aws:iam/rolePolicyAttachment:RolePolicyAttachment")
        if d.name.endswith(tuple(f"-node-{i}" for i in range(9)))
    }
    assert attached and all(arn.startswith("arn:aws:iam::aws:policy/") for arn in attached)


@pytest.mark.parametrize("stack", EKS_STACKS)
def test_no_policy_in_the_stack_grants_s3_wildcards(stack: str) -> None:
    documents = [
        d.inputs["policy"]
        for d in declared_stack(stack)
        if d.type in ("aws:iam/policy:Policy", "aws:iam/rolePolicy:RolePolicy")
        and isinstance(d.inputs.get("policy"), str)
    ]
    assert documents  # the add-ons' IRSA policies at least
    for document in documents:
        assert not [a for a in _policy_actions(document) if a.startswith("s3:") and "*" in a]
        assert "*" not in _policy_actions(document)


@pytest.mark.parametrize(
    ("stack", "public"), [("prod", False), ("hybrid", False), ("aws-dev", True)]
)
def test_the_api_endpoint_is_private_unless_settings_ask(stack: str, public: bool) -> None:
    (cluster,) = of_type(declared_stack(stack), "aws:eks/cluster:Cluster")
    vpc = cluster.inputs["vpcConfig"]
    assert vpc["endpointPrivateAccess"] is True
    assert vpc["endpointPublicAccess"] is public
    assert bool(vpc.get("publicAccessCidrs")) is public
    assert "0.0.0.0/0" not in (vpc.get("publicAccessCidrs") or [])
    assert cluster.inputs["encryptionConfig"]["resources"] == ["secrets"]
    assert cluster.inputs["accessConfig"]["authenticationMode"] == "API"


def test_nodes_require_imdsv2_and_encrypt_their_root_volume() -> None:
    templates = of_type(declared_stack("prod"), "aws:ec2/launchTemplate:LaunchTemplate")
    assert len(templates) == len(eks_tiers("prod"))
    for template in templates:
        metadata = template.inputs["metadataOptions"]
        assert metadata["httpTokens"] == "required"
        assert metadata["httpPutResponseHopLimit"] == 1
        (root,) = template.inputs["blockDeviceMappings"]
        assert root["ebs"]["encrypted"] == "true"


def test_the_vpc_spans_the_zones_with_private_node_subnets() -> None:
    declared = declared_stack("prod")
    subnets = of_type(declared, "aws:ec2/subnet:Subnet")
    zones = {"eu-west-1a", "eu-west-1b", "eu-west-1c"}
    for role, tag in (
        ("private", "kubernetes.io/role/internal-elb"),
        ("public", "kubernetes.io/role/elb"),
    ):
        mine = [s for s in subnets if f"-{role}-" in s.name]
        assert {s.inputs["availabilityZone"] for s in mine} == zones
        assert all(s.inputs["tags"][tag] == "1" for s in mine)
        assert not any(s.inputs["mapPublicIpOnLaunch"] for s in mine)
    assert len(of_type(declared, "aws:ec2/natGateway:NatGateway")) == 3  # per-zone in prod
    assert len(of_type(declared_stack("aws-dev"), "aws:ec2/natGateway:NatGateway")) == 1
    private_ids = {f"{s.name}-id" for s in subnets if "-private-" in s.name}
    for group in of_type(declared, NODE_GROUP):
        assert set(group.inputs["subnetIds"]) == private_ids


def test_admins_come_in_through_access_entries_and_irsa_has_an_oidc_provider() -> None:
    declared = declared_stack("prod")
    (entry,) = of_type(declared, "aws:eks/accessEntry:AccessEntry")
    assert entry.inputs["principalArn"] == "arn:aws:iam::210987654321:role/platform-admin"
    (association,) = of_type(declared, "aws:eks/accessPolicyAssociation:AccessPolicyAssociation")
    assert association.inputs["policyArn"].endswith("/AmazonEKSClusterAdminPolicy")
    (oidc,) = of_type(declared, "aws:iam/openIdConnectProvider:OpenIdConnectProvider")
    assert oidc.inputs["clientIdLists"] == ["sts.amazonaws.com"]


def test_pods_get_aws_access_only_through_their_own_service_account_role() -> None:
    roles: dict[str, object] = {}

    def program() -> None:
        settings = pulumi_settings()
        for name, cluster in settings.clusters.items():
            cluster_roles = provision(name, cluster, settings.model_store, MODELS_POLICY)
            roles[name] = cluster_roles.pod_role(
                "research", "fetch", "llamafleet-research", MODELS_POLICY
            )

    # Not a preview: the trust policy is built from outputs a preview leaves unknown.
    declared = run_program(program, "clusters-test", engine(stack_config("hybrid")), preview=False)
    assert roles["dc1"] is None  # on-prem: the store's read-only key, no AWS identity
    assert roles["burst"] is not None
    (role,) = [
        d for d in declared if d.name == "burst-research-fetch" and d.type == "aws:iam/role:Role"
    ]
    (statement,) = json.loads(role.inputs["assumeRolePolicy"])["Statement"]
    assert statement["Action"] == "sts:AssumeRoleWithWebIdentity"
    conditions = statement["Condition"]["StringEquals"]
    assert "system:serviceaccount:llamafleet-research:fetch" in conditions.values()
    assert "sts.amazonaws.com" in conditions.values()
    (attachment,) = [
        d
        for d in declared
        if d.name == "burst-research-fetch"
        and d.type == "aws:iam/rolePolicyAttachment:RolePolicyAttachment"
    ]
    assert attachment.inputs["policyArn"] == MODELS_POLICY
