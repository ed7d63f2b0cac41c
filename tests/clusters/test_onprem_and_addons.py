"""OnPremCluster, ClusterAddons and the load-balancer settings under mocks."""

from __future__ import annotations

import re

import pytest

from llamafleet.components.load_balancing import aws_nlb, metallb
from llamafleet.settings.load import load_stack_file, stack_file

from .conftest import (
    ONPREM_STACKS,
    declare,
    declared_stack,
    is_secret,
    of_type,
    provisioned,
    stack_config,
)

RELEASE = "kubernetes:helm.sh/v3:Release"
PROVIDER = "pulumi:providers:kubernetes"


@pytest.mark.parametrize("stack", ONPREM_STACKS)
def test_exactly_the_named_nodes_get_their_tier_labels(stack: str) -> None:
    settings = load_stack_file(stack_file(stack))
    expected = {
        node: {"llamafleet.io/tier": tier_name, "llamafleet.io/isa": tier.isa}
        for cluster in settings.clusters.values()
        if cluster.onprem
        for tier_name, tier in cluster.tiers.items()
        for node in tier.node_names
    }
    patches = of_type(declared_stack(stack), "kubernetes:core/v1:NodePatch")
    assert len(patches) == len(expected)
    assert {p.inputs["metadata"]["name"]: p.inputs["metadata"]["labels"] for p in patches} == (
        expected
    )


def test_on_prem_gpu_nodes_get_the_label_the_nvidia_device_plugin_selects() -> None:
    config = stack_config("onprem")
    dc1 = config["llamafleet:clusters"]["dc1"]
    dc1["addons"]["nvidiaDevicePlugin"] = True
    dc1["tiers"]["a100"] = {
        "kind": "gpu",
        "isa": "avx2",
        "cpusPerNode": 32,
        "memoryPerNodeGib": 256,
        "nodes": {"min": 1, "max": 1},
        "nodeNames": ["dc1-gpu-n01"],
        "gpu": {"type": "nvidia-a100", "count": 1, "memoryGib": 80},
    }
    declared = declare(config)
    labels = {
        p.inputs["metadata"]["name"]: p.inputs["metadata"]["labels"]
        for p in of_type(declared, "kubernetes:core/v1:NodePatch")
    }
    assert labels["dc1-gpu-n01"] == {
        "llamafleet.io/tier": "a100",
        "llamafleet.io/isa": "avx2",
        "llamafleet.io/accelerator": "nvidia",
    }
    assert "llamafleet.io/accelerator" not in labels["dc1-r1-n01"]
    (plugin,) = [
        r for r in of_type(declared, RELEASE) if r.inputs["chart"] == "nvidia-device-plugin"
    ]
    terms = plugin.inputs["values"]["affinity"]["nodeAffinity"][
        "requiredDuringSchedulingIgnoredDuringExecution"
    ]["nodeSelectorTerms"]
    assert terms == [
        {
            "matchExpressions": [
                {"key": "llamafleet.io/accelerator", "operator": "In", "values": ["nvidia"]}
            ]
        }
    ]


def test_metallb_gets_the_pool_and_l2_advertisement_from_settings() -> None:
    declared = declared_stack("onprem")
    (pool,) = of_type(declared, "kubernetes:metallb.io/v1beta1:IPAddressPool")
    assert pool.inputs["spec"] == {"addresses": ["10.20.30.40-10.20.30.47"], "autoAssign": False}
    (l2,) = of_type(declared, "kubernetes:metallb.io/v1beta1:L2Advertisement")
    assert l2.inputs["spec"] == {"ipAddressPools": ["llamafleet"], "interfaces": ["bond0"]}
    assert pool.inputs["metadata"]["namespace"] == l2.inputs["metadata"]["namespace"]


def test_a_kubeconfig_secret_reaches_the_provider_only_as_a_secret() -> None:
    config = stack_config("onprem")
    config["llamafleet:clusters"]["dc1"]["onprem"]["kubeconfigSecret"] = "dc1:kubeconfig"
    config["dc1:kubeconfig"] = "apiVersion: v1\nkind: Config\n# dc1-kubeconfig-body\n"
    (provider,) = of_type(declare(config), PROVIDER)
    assert is_secret(provider.inputs["kubeconfig"])
    assert "dc1-kubeconfig-body" not in str(provider.redacted_inputs)


def test_without_a_secret_the_provider_uses_the_kubeconfig_file_and_context() -> None:
    (provider,) = of_type(declared_stack("onprem"), PROVIDER)
    assert "kubeconfig" not in provider.inputs
    assert provider.inputs["context"] == "dc1-admin"


def test_the_eks_provider_gets_the_generated_kubeconfig_as_a_secret() -> None:
    (provider,) = of_type(declared_stack("prod"), PROVIDER)
    assert is_secret(provider.inputs["kubeconfig"])


PINNED = re.compile(r"^v?\d+\.\d+\.\d+$")


@pytest.mark.parametrize(
    ("stack", "charts"),
    [
        (
            "prod",
            {
                "keda",
                "kube-prometheus-stack",
                "metrics-server",
                "nvidia-device-plugin",
                "cluster-autoscaler",
                "aws-load-balancer-controller",
            },
        ),
        ("onprem", {"keda", "metrics-server", "node-feature-discovery"}),
    ],
)
def test_addons_are_the_charts_settings_ask_for_each_pinned(stack: str, charts: set[str]) -> None:
    releases = of_type(declared_stack(stack), RELEASE)
    assert {r.inputs["chart"] for r in releases} == charts
    for release in releases:
        assert PINNED.match(release.inputs["version"]), release.name
        assert release.inputs["repositoryOpts"]["repo"].startswith("https://")


def test_the_cluster_autoscaler_assumes_an_irsa_role_for_its_own_service_account() -> None:
    declared = declared_stack("prod")
    (release,) = [
        r for r in of_type(declared, RELEASE) if r.inputs["chart"] == "cluster-autoscaler"
    ]
    values = release.inputs["values"]
    assert values["autoDiscovery"]["clusterName"] == "clusters-test-prod"
    assert values["image"]["tag"] == "v1.33.0"  # the control plane's minor
    assert "eks.amazonaws.com/role-arn" in values["rbac"]["serviceAccount"]["annotations"]
    (policy,) = [
        p for p in of_type(declared, "aws:iam/rolePolicy:RolePolicy") if "autoscaler" in p.name
    ]
    assert "k8s.io/cluster-autoscaler/clusters-test-prod" in policy.inputs["policy"]


def test_a_bare_existing_cluster_gets_a_provider_and_nothing_else() -> None:
    assert [d.type for d in declared_stack("local")] == [PROVIDER]


def test_gpu_add_ons_only_where_there_are_gpu_tiers() -> None:
    charts = {r.inputs["chart"] for r in of_type(declared_stack("onprem"), RELEASE)}
    assert "nvidia-device-plugin" not in charts
    assert "cluster-autoscaler" not in charts  # fixed hardware


def test_load_balancing_nlb_drains_as_long_as_the_pod() -> None:
    nlb = aws_nlb("internal", drain_seconds=45, source_ranges=["10.0.0.0/8"])
    assert nlb.annotations["service.beta.kubernetes.io/aws-load-balancer-scheme"] == "internal"
    assert (
        nlb.annotations["service.beta.kubernetes.io/aws-load-balancer-target-group-attributes"]
        == "deregistration_delay.timeout_seconds=45"
    )
    assert (
        "cross_zone.enabled=true"
        in nlb.annotations["service.beta.kubernetes.io/aws-load-balancer-attributes"]
    )
    assert nlb.spec == {
        "type": "LoadBalancer",
        "loadBalancerClass": "service.k8s.aws/nlb",
        "loadBalancerSourceRanges": ["10.0.0.0/8"],
    }
    # IP targets: the controller's readiness gate on the namespace's pods; no node hop.
    assert nlb.namespace_labels == {"elbv2.k8s.aws/pod-readiness-gate-inject": "enabled"}
    pool = metallb("llamafleet", "10.20.30.40")
    assert pool.annotations == {
        "metallb.universe.tf/address-pool": "llamafleet",
        "metallb.universe.tf/loadBalancerIPs": "10.20.30.40",
    }
    # Layer 2: the elected node spreads over every pod, and keeps the address while they roll.
    assert pool.spec == {"type": "LoadBalancer", "externalTrafficPolicy": "Cluster"}
    assert pool.namespace_labels == {}


@pytest.mark.parametrize(
    ("stack", "cluster", "annotation", "value"),
    [
        ("prod", "prod", "service.beta.kubernetes.io/aws-load-balancer-scheme", "internet-facing"),
        ("aws-dev", "dev", "service.beta.kubernetes.io/aws-load-balancer-scheme", "internal"),
        ("onprem", "dc1", "metallb.universe.tf/loadBalancerIPs", "10.20.30.40"),
    ],
)
def test_each_cluster_says_how_its_load_balancers_work(
    stack: str, cluster: str, annotation: str, value: str
) -> None:
    lb = provisioned(stack, cluster).load_balancing(drain_seconds=30)
    assert lb.annotations[annotation] == value
