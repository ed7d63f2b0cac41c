"""The labels, taints, resource names and annotations the components agree on, written once.

Nodes carry the tier and ISA labels (NodeTier on EKS, OnPremCluster on named nodes) and pods
select them; GPU nodes carry a taint named after the GPU resource, which GPU pods tolerate.
"""

from __future__ import annotations

from typing import Final, Literal

# The team a namespace (and what is in it) belongs to.
TEAM_LABEL: Final = "llamafleet.io/team"
# The tier a node belongs to; pods select their tier's nodes by it.
TIER_LABEL: Final = "llamafleet.io/tier"
# The model a llama-server Deployment, its pods and its objects serve
# (llamafleet.components.inference_pod.pod_labels).
MODEL_LABEL: Final = "llamafleet.io/model"
# The newest x86 level (llamafleet.settings.types.ISA_LEVELS) every node of the tier supports.
ISA_LABEL: Final = "llamafleet.io/isa"
# NVIDIA on GPU nodes: where the NVIDIA device plugin runs.
ACCELERATOR_LABEL: Final = "llamafleet.io/accelerator"
NVIDIA: Final = "nvidia"
# The NVIDIA device plugin's extended resource; GPU nodes are tainted with the same key
# (NoSchedule) so only pods that ask for GPUs, and tolerate it, land there.
GPU_RESOURCE: Final = "nvidia.com/gpu"
GPU_TAINT_KEY: Final = GPU_RESOURCE
# EKS IAM roles for service accounts: the role a ServiceAccount's pods assume
# (https://docs.aws.amazon.com/eks/latest/userguide/associate-service-account-role.html).
IRSA_ROLE_ANNOTATION: Final = "eks.amazonaws.com/role-arn"
# kube-prometheus-stack's Grafana loads every ConfigMap carrying this label with this value, in
# any namespace (its dashboards sidecar: grafana.sidecar.dashboards.label / labelValue).
DASHBOARD_LABEL: Final = "grafana_dashboard"
DASHBOARD_LABEL_VALUE: Final = "1"


def tier_node_labels(tier: str, isa: str, kind: Literal["cpu", "gpu"]) -> dict[str, str]:
    """The labels of a tier's nodes, EKS node group or on-prem node alike: TIER_LABEL and
    ISA_LABEL, plus ACCELERATOR_LABEL `nvidia` on gpu tiers (what the NVIDIA device plugin's
    DaemonSet selects, cluster_addons)."""
    labels = {TIER_LABEL: tier, ISA_LABEL: isa}
    if kind == "gpu":
        labels[ACCELERATOR_LABEL] = NVIDIA
    return labels
