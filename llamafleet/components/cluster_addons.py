"""ClusterAddons: the cluster-wide charts the fleet relies on, each pinned to an exact version.

`k8s.helm.v3.Release`, not `helm.v4.Chart`: Helm itself installs and upgrades these charts, so
their CRDs, hooks and upgrade ordering (KEDA, kube-prometheus-stack) work as their authors test
them, and a preview records one resource per chart with its pinned version rather than expanding
hundreds of templated objects, which would also need the chart repositories at preview time.

KEDA scales llama-server Deployments on the queue; cluster-autoscaler (EKS) adds nodes for pods
that cannot be scheduled; the NVIDIA device plugin advertises GPUs on GPU tiers; metrics-server
serves CPU metrics for the HPA fallback; kube-prometheus-stack scrapes /metrics where the cluster
has no Prometheus of its own.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Annotated, Any, Final, Literal

import pulumi
import pulumi_aws as aws
import pulumi_kubernetes as k8s
from pydantic import Field, StringConstraints

from llamafleet.components.config import ComponentConfig
from llamafleet.components.eks_cluster import EksCluster, Oidc, irsa_role
from llamafleet.components.labels import (
    ACCELERATOR_LABEL,
    DASHBOARD_LABEL,
    DASHBOARD_LABEL_VALUE,
    GPU_TAINT_KEY,
    IRSA_ROLE_ANNOTATION,
    MODEL_LABEL,
    NVIDIA,
    TIER_LABEL,
)


@dataclass(frozen=True)
class ChartRef:
    """A Helm chart pinned to one version.

    Attributes:
        chart: Chart name in its repository.
        repo: URL of the chart repository.
        version: Exact chart version.
    """

    chart: str
    repo: str
    version: str


# Exact chart versions only: a range or "latest" would change what runs without a review.
ChartVersion = Annotated[str, StringConstraints(pattern=r"^v?\d+\.\d+\.\d+$")]

REPOS = {
    "keda": "https://kedacore.github.io/charts",
    "kube-prometheus-stack": "https://prometheus-community.github.io/helm-charts",
    "cluster-autoscaler": "https://kubernetes.github.io/autoscaler",
    "nvidia-device-plugin": "https://nvidia.github.io/k8s-device-plugin",
    "metrics-server": "https://kubernetes-sigs.github.io/metrics-server",
    "node-feature-discovery": "https://kubernetes-sigs.github.io/node-feature-discovery/charts",
    "metallb": "https://metallb.github.io/metallb",
    "aws-load-balancer-controller": "https://aws.github.io/eks-charts",
}


def chart(name: str, version: str) -> ChartRef:
    """Chart `name` from its repository in REPOS (a name not there is a KeyError), at
    `version`."""
    return ChartRef(chart=name, repo=REPOS[name], version=version)


def helm_release(
    name: str,
    ref: ChartRef,
    namespace: str,
    values: dict[str, Any],
    opts: pulumi.ResourceOptions,
) -> k8s.helm.v3.Release:
    """A Helm release `name` of `ref` with chart `values`, in `namespace` (made if absent).

    Atomic with cleanup on failure: Helm undoes a failed install or upgrade; it keeps 5
    revisions of the release.
    """
    return k8s.helm.v3.Release(
        name,
        chart=ref.chart,
        version=ref.version,
        repository_opts=k8s.helm.v3.RepositoryOptsArgs(repo=ref.repo),
        namespace=namespace,
        create_namespace=True,
        values=values,
        # A failed upgrade rolls back instead of leaving a half-applied chart.
        atomic=True,
        cleanup_on_fail=True,
        max_history=5,
        opts=opts,
    )


class ChartVersions(ComponentConfig):
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


class ClusterAddonsConfig(ComponentConfig):
    """Which Helm add-ons ClusterAddons installs, at which versions
    (`llamafleet:clusters.<name>.addons` in a stack's settings). The NVIDIA device plugin goes
    only where the cluster has GPU nodes, cluster-autoscaler and the AWS Load Balancer
    Controller only on EKS."""

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


@dataclass(frozen=True)
class ClusterAddonsArgs:
    """The add-ons' config and what they need from the cluster.

    Attributes:
        config: Which add-ons, at which chart versions.
        gpu_nodes: Whether the cluster has GPU nodes (the NVIDIA device plugin's only use).
        monitoring_namespace: Namespace of kube-prometheus-stack.
        eks: The EksCluster, for cluster-autoscaler and the AWS Load Balancer Controller (each
            on an IRSA role of its own); None: another cluster, where neither is installed.
    """

    config: ClusterAddonsConfig
    gpu_nodes: bool = False
    monitoring_namespace: str = "monitoring"
    eks: EksCluster | None = None


class ClusterAddons(pulumi.ComponentResource):
    """The add-ons `ClusterAddonsArgs.config` names, as Helm releases; `releases` maps chart name to
    release.

    keda goes to namespace `keda`, kube-prometheus-stack to `monitoring_namespace` (selecting
    every ServiceMonitor and PodMonitor, 15 days' retention, no Grafana), the others to
    kube-system. The NVIDIA device plugin runs only on `llamafleet.io/accelerator=nvidia` nodes.
    """

    releases: dict[str, k8s.helm.v3.Release]

    def __init__(
        self, name: str, args: ClusterAddonsArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__("llamafleet:cluster:ClusterAddons", name, None, opts)
        self._name = name
        self.releases = {}
        config, versions, eks = args.config, args.config.versions, args.eks
        if config.keda:
            self._release("keda", versions.keda, "keda", {})
        if config.prometheus == "install":
            self._release(
                "kube-prometheus-stack",
                versions.kube_prometheus_stack,
                args.monitoring_namespace,
                _prometheus_values(),
            )
        if config.metrics_server:
            self._release("metrics-server", versions.metrics_server, "kube-system", {})
        if config.nvidia_device_plugin and args.gpu_nodes:
            self._release(
                "nvidia-device-plugin", versions.nvidia_device_plugin, "kube-system", _gpu_values()
            )
        if config.cluster_autoscaler and eks is not None:
            self._cluster_autoscaler(versions.cluster_autoscaler, eks)
        if config.aws_load_balancer_controller and eks is not None:
            self._load_balancer_controller(versions.aws_load_balancer_controller, eks)
        self.register_outputs(
            {chart_name: release.status for chart_name, release in self.releases.items()}
        )

    def _release(
        self,
        chart_name: str,
        version: str,
        namespace: str,
        values: dict[str, Any],
        depends_on: list[pulumi.Resource] | None = None,
    ) -> None:
        self.releases[chart_name] = helm_release(
            f"{self._name}-{chart_name}",
            chart(chart_name, version),
            namespace,
            values,
            pulumi.ResourceOptions(parent=self, depends_on=depends_on or []),
        )

    def _service_account_role(
        self, chart_name: str, oidc: Oidc, namespace: str, policy: pulumi.Input[str]
    ) -> tuple[aws.iam.Role, aws.iam.RolePolicy]:
        child = pulumi.ResourceOptions(parent=self)
        role = irsa_role(f"{self._name}-{chart_name}", oidc, namespace, chart_name, child)
        inline = aws.iam.RolePolicy(
            f"{self._name}-{chart_name}", role=role.id, policy=policy, opts=child
        )
        return role, inline

    def _cluster_autoscaler(self, version: str, eks: EksCluster) -> None:
        """cluster-autoscaler on an IRSA role that resizes only this cluster's node groups."""
        policy = eks.cluster.name.apply(autoscaler_policy)
        role, inline = self._service_account_role(
            "cluster-autoscaler", eks.oidc, "kube-system", policy
        )
        values = {
            "cloudProvider": "aws",
            "awsRegion": eks.region,
            # cluster-autoscaler's minor must match the control plane's; x.y.0 exists for each.
            "image": {"tag": f"v{eks.kubernetes_version}.0"},
            "autoDiscovery": {"clusterName": eks.cluster.name},
            "rbac": {
                "serviceAccount": {
                    "create": True,
                    "name": "cluster-autoscaler",
                    "annotations": {IRSA_ROLE_ANNOTATION: role.arn},
                }
            },
            "extraArgs": {
                # Fill the fullest suitable group first; tiers differ, so never balance them.
                "expander": "least-waste",
                "balance-similar-node-groups": "false",
                # The model cache is an emptyDir that the next pod refetches: not a reason to keep
                # an idle node.
                "skip-nodes-with-local-storage": "false",
                "scale-down-unneeded-time": "10m",
            },
        }
        self._release("cluster-autoscaler", version, "kube-system", values, [inline])

    def _load_balancer_controller(self, version: str, eks: EksCluster) -> None:
        """The AWS Load Balancer Controller (NLBs for Services), on its own IRSA role."""
        policy = eks.cluster.name.apply(load_balancer_policy)
        chart_name = "aws-load-balancer-controller"
        role, inline = self._service_account_role(chart_name, eks.oidc, "kube-system", policy)
        values = {
            "clusterName": eks.cluster.name,
            "region": eks.region,
            "vpcId": eks.vpc_id,
            "enableShield": False,
            "enableWaf": False,
            "enableWafv2": False,
            "serviceAccount": {
                "create": True,
                "name": chart_name,
                "annotations": {IRSA_ROLE_ANNOTATION: role.arn},
            },
        }
        self._release(chart_name, version, "kube-system", values, [inline])


# kube-state-metrics' --metric-labels-allowlist (the chart joins the list with commas): the
# Kubernetes labels the alerts and dashboards join on (kube_pod_labels, kube_deployment_labels,
# kube_node_labels; llamafleet.monitoring.metrics). The tests run the pinned kube-state-metrics
# with this same list.
KSM_LABELS_ALLOWLIST: Final = (
    f"pods=[{TIER_LABEL},{MODEL_LABEL}]",
    f"deployments=[{TIER_LABEL},{MODEL_LABEL}]",
    f"nodes=[{TIER_LABEL}]",
)


def _prometheus_values() -> dict[str, Any]:
    """kube-prometheus-stack's values: every ServiceMonitor, PodMonitor and PrometheusRule is
    picked up, not only this release's (the fleet's live in other namespaces); the fleet's
    AlertmanagerConfig routes alerts whatever their namespace label (its alerts carry the
    teams'); kube-state-metrics exports the pods', Deployments' and nodes' tier and model labels
    (LlamafleetTierPodsPending, the dashboards); Grafana loads every ConfigMap labelled
    DASHBOARD_LABEL, in any namespace (FleetMonitoring's dashboards), with an admin password the
    grafana chart generates (an empty adminPassword: not the chart's well-known default) and
    keeps in its Secret."""
    return {
        "prometheus": {
            "prometheusSpec": {
                "serviceMonitorSelectorNilUsesHelmValues": False,
                "podMonitorSelectorNilUsesHelmValues": False,
                "ruleSelectorNilUsesHelmValues": False,
                "retention": "15d",
            }
        },
        "alertmanager": {
            "alertmanagerSpec": {"alertmanagerConfigMatcherStrategy": {"type": "None"}}
        },
        "kube-state-metrics": {"metricLabelsAllowlist": list(KSM_LABELS_ALLOWLIST)},
        "grafana": {
            "enabled": True,
            "adminPassword": "",
            "sidecar": {
                "dashboards": {
                    "enabled": True,
                    "label": DASHBOARD_LABEL,
                    "labelValue": DASHBOARD_LABEL_VALUE,
                    "searchNamespace": "ALL",
                }
            },
        },
    }


def _gpu_values() -> dict[str, Any]:
    # Only on the GPU tiers' nodes (the chart's default affinity expects NFD's PCI labels).
    return {
        "affinity": {
            "nodeAffinity": {
                "requiredDuringSchedulingIgnoredDuringExecution": {
                    "nodeSelectorTerms": [
                        {
                            "matchExpressions": [
                                {"key": ACCELERATOR_LABEL, "operator": "In", "values": [NVIDIA]}
                            ]
                        }
                    ]
                }
            }
        },
        "tolerations": [{"key": GPU_TAINT_KEY, "operator": "Exists", "effect": "NoSchedule"}],
    }


def _statement(actions: list[str], condition: dict[str, Any] | None = None) -> dict[str, Any]:
    statement: dict[str, Any] = {"Effect": "Allow", "Action": actions, "Resource": "*"}
    if condition:
        statement["Condition"] = condition
    return statement


def autoscaler_policy(cluster_name: str) -> str:
    """cluster-autoscaler's documented minimum: read everything, resize only this cluster's
    groups (EKS tags a managed node group's ASG `k8s.io/cluster-autoscaler/<name>: owned`)."""
    read = [
        "autoscaling:DescribeAutoScalingGroups",
        "autoscaling:DescribeAutoScalingInstances",
        "autoscaling:DescribeLaunchConfigurations",
        "autoscaling:DescribeScalingActivities",
        "autoscaling:DescribeTags",
        "ec2:DescribeImages",
        "ec2:DescribeInstanceTypes",
        "ec2:DescribeLaunchTemplateVersions",
        "ec2:GetInstanceTypesFromInstanceRequirements",
        # Labels and taints of an empty managed node group, to scale it from zero.
        "eks:DescribeNodegroup",
    ]
    write = ["autoscaling:SetDesiredCapacity", "autoscaling:TerminateInstanceInAutoScalingGroup"]
    owned = {"StringEquals": {f"aws:ResourceTag/k8s.io/cluster-autoscaler/{cluster_name}": "owned"}}
    return json.dumps(
        {"Version": "2012-10-17", "Statement": [_statement(read), _statement(write, owned)]}
    )


def load_balancer_policy(cluster_name: str) -> str:
    """What the AWS Load Balancer Controller needs for NLBs of Services (no ALB, WAF or Shield):
    read the VPC, manage load balancers and the security groups it tags as its own."""
    tagged = {"StringEquals": {"aws:ResourceTag/elbv2.k8s.aws/cluster": cluster_name}}
    read = [
        "ec2:DescribeAccountAttributes",
        "ec2:DescribeAddresses",
        "ec2:DescribeAvailabilityZones",
        "ec2:DescribeInternetGateways",
        "ec2:DescribeVpcs",
        "ec2:DescribeSubnets",
        "ec2:DescribeSecurityGroups",
        "ec2:DescribeInstances",
        "ec2:DescribeNetworkInterfaces",
        "ec2:DescribeTags",
        "ec2:DescribeRouteTables",
        "elasticloadbalancing:Describe*",
    ]
    create = [
        "ec2:CreateSecurityGroup",
        "ec2:CreateTags",
        "elasticloadbalancing:CreateLoadBalancer",
        "elasticloadbalancing:CreateTargetGroup",
        "elasticloadbalancing:CreateListener",
        "elasticloadbalancing:AddTags",
    ]
    # Rules on the cluster's node security group, which the controller does not own.
    security_group_rules = ["ec2:AuthorizeSecurityGroupIngress", "ec2:RevokeSecurityGroupIngress"]
    manage = [
        "ec2:DeleteSecurityGroup",
        "elasticloadbalancing:ModifyLoadBalancerAttributes",
        "elasticloadbalancing:SetSecurityGroups",
        "elasticloadbalancing:SetSubnets",
        "elasticloadbalancing:DeleteLoadBalancer",
        "elasticloadbalancing:ModifyTargetGroup",
        "elasticloadbalancing:ModifyTargetGroupAttributes",
        "elasticloadbalancing:DeleteTargetGroup",
        "elasticloadbalancing:ModifyListener",
        "elasticloadbalancing:DeleteListener",
        "elasticloadbalancing:RegisterTargets",
        "elasticloadbalancing:DeregisterTargets",
    ]
    service_linked = {"StringEquals": {"iam:AWSServiceName": "elasticloadbalancing.amazonaws.com"}}
    statements = [
        _statement(read + security_group_rules),
        _statement(["iam:CreateServiceLinkedRole"], service_linked),
        _statement(
            create, {"StringEquals": {"aws:RequestTag/elbv2.k8s.aws/cluster": cluster_name}}
        ),
        _statement(manage, tagged),
    ]
    return json.dumps({"Version": "2012-10-17", "Statement": statements})
