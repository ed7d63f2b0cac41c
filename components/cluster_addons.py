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
from typing import Any

import pulumi
import pulumi_aws as aws
import pulumi_kubernetes as k8s

from components.eks_cluster import Oidc, irsa_role
from components.labels import ACCELERATOR_LABEL, GPU_TAINT_KEY, IRSA_ROLE_ANNOTATION


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


@dataclass(frozen=True)
class AutoscalerArgs:
    """cluster-autoscaler on EKS, on an IRSA role that resizes only this cluster's node groups.

    Attributes:
        version: cluster-autoscaler Helm chart version.
        kubernetes_version: Control plane version MAJOR.MINOR (e.g. 1.33); the image tag is
            vMAJOR.MINOR.0, since the autoscaler's minor must match the control plane's.
        cluster_name: EKS cluster name (auto-discovery and the IAM policy's tag condition).
        region: AWS region of the cluster.
        oidc: The cluster's OIDC provider, for the IRSA role.
    """

    version: str
    kubernetes_version: str
    cluster_name: pulumi.Input[str]
    region: pulumi.Input[str]
    oidc: Oidc


@dataclass(frozen=True)
class LoadBalancerControllerArgs:
    """The AWS Load Balancer Controller on EKS (NLBs for Services), on its own IRSA role.

    Attributes:
        version: aws-load-balancer-controller Helm chart version.
        cluster_name: EKS cluster name (the chart's `clusterName`; the IAM policy's tag
            conditions).
        region: AWS region of the cluster.
        vpc_id: ID of the cluster's VPC.
        oidc: The cluster's OIDC provider, for the IRSA role.
    """

    version: str
    cluster_name: pulumi.Input[str]
    region: pulumi.Input[str]
    vpc_id: pulumi.Input[str]
    oidc: Oidc


@dataclass(frozen=True)
class ClusterAddonsArgs:
    """A chart version per add-on; None: not installed (the cluster has it, or has no use)."""

    keda: str | None = None
    kube_prometheus_stack: str | None = None
    metrics_server: str | None = None
    nvidia_device_plugin: str | None = None
    # Namespace of kube-prometheus-stack.
    monitoring_namespace: str = "monitoring"
    # EKS only: cluster-autoscaler and its IAM role; None: not installed.
    cluster_autoscaler: AutoscalerArgs | None = None
    # EKS only: the AWS Load Balancer Controller and its IAM role; None: not installed.
    load_balancer_controller: LoadBalancerControllerArgs | None = None


class ClusterAddons(pulumi.ComponentResource):
    """The add-ons `ClusterAddonsArgs` names, as Helm releases; `releases` maps chart name to
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
        if args.keda:
            self._release("keda", args.keda, "keda", {})
        if args.kube_prometheus_stack:
            self._release(
                "kube-prometheus-stack",
                args.kube_prometheus_stack,
                args.monitoring_namespace,
                _prometheus_values(),
            )
        if args.metrics_server:
            self._release("metrics-server", args.metrics_server, "kube-system", {})
        if args.nvidia_device_plugin:
            self._release(
                "nvidia-device-plugin", args.nvidia_device_plugin, "kube-system", _gpu_values()
            )
        if args.cluster_autoscaler:
            self._cluster_autoscaler(args.cluster_autoscaler)
        if args.load_balancer_controller:
            self._load_balancer_controller(args.load_balancer_controller)
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

    def _cluster_autoscaler(self, args: AutoscalerArgs) -> None:
        policy = pulumi.Output.from_input(args.cluster_name).apply(autoscaler_policy)
        role, inline = self._service_account_role(
            "cluster-autoscaler", args.oidc, "kube-system", policy
        )
        values = {
            "cloudProvider": "aws",
            "awsRegion": args.region,
            # cluster-autoscaler's minor must match the control plane's; x.y.0 exists for each.
            "image": {"tag": f"v{args.kubernetes_version}.0"},
            "autoDiscovery": {"clusterName": args.cluster_name},
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
        self._release("cluster-autoscaler", args.version, "kube-system", values, [inline])

    def _load_balancer_controller(self, args: LoadBalancerControllerArgs) -> None:
        policy = pulumi.Output.from_input(args.cluster_name).apply(load_balancer_policy)
        chart_name = "aws-load-balancer-controller"
        role, inline = self._service_account_role(chart_name, args.oidc, "kube-system", policy)
        values = {
            "clusterName": args.cluster_name,
            "region": args.region,
            "vpcId": args.vpc_id,
            "enableShield": False,
            "enableWaf": False,
            "enableWafv2": False,
            "serviceAccount": {
                "create": True,
                "name": chart_name,
                "annotations": {IRSA_ROLE_ANNOTATION: role.arn},
            },
        }
        self._release(chart_name, args.version, "kube-system", values, [inline])


def _prometheus_values() -> dict[str, Any]:
    # Pick up every ServiceMonitor (the InferenceServices'), not only this release's.
    return {
        "prometheus": {
            "prometheusSpec": {
                "serviceMonitorSelectorNilUsesHelmValues": False,
                "podMonitorSelectorNilUsesHelmValues": False,
                "retention": "15d",
            }
        },
        "grafana": {"enabled": False},
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
                                {"key": ACCELERATOR_LABEL, "operator": "In", "values": ["nvidia"]}
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
