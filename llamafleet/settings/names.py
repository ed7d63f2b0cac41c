"""The names the program builds from settings, and the rules of each object they name.

A team, model, tier or cluster name is short and valid on its own
(`llamafleet.settings.schema.Name`), but the program joins them: a Service `<model>-<tier>`, a
namespace `llamafleet-<team>`, an IAM role `<cluster>-<team>-<model>-<tier>` that Pulumi autonames
with a suffix, an EKS node group. Each builder here is the one the program uses, and
`llamafleet.settings.rules` checks each built name against the object it names with the rules
below, so `validate` refuses what the API server or AWS would refuse in the middle of an `up`.
"""

from __future__ import annotations

import itertools
import re
from typing import Final

from llamafleet.components.config import DNS_1123_LABEL_PATTERN

NAMESPACE_PREFIX: Final = "llamafleet-"

# Pulumi autonaming appends "-" and 7 random characters to a resource's name.
AUTONAME_SUFFIX_LENGTH: Final = 8
# Kubernetes object names (https://kubernetes.io/docs/concepts/overview/working-with-objects/
# names/): a DNS-1123 label for namespaces (lower case alphanumerics and '-', 63 at most), a
# DNS-1035 label for Services (the same, starting with a letter).
DNS_LABEL_MAX: Final = 63
DNS_1123_LABEL: Final = re.compile(DNS_1123_LABEL_PATTERN)
DNS_1035_LABEL: Final = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")
# IAM role names: 64 characters (https://docs.aws.amazon.com/IAM/latest/UserGuide/
# reference_iam-quotas.html); EKS node group names: 63 (CreateNodegroup, nodegroupName); EKS
# cluster names: 100, starting with a letter or digit (CreateCluster, name).
IAM_ROLE_MAX: Final = 64
NODE_GROUP_MAX: Final = 63
EKS_CLUSTER_MAX: Final = 100


def team_namespace(team: str) -> str:
    """The namespace a team's objects live in."""
    return f"{NAMESPACE_PREFIX}{team}"


def instance_name(model: str, tier: str) -> str:
    """The name of a model's Deployment, Service, autoscaler and ServiceAccount on a tier."""
    return f"{model}-{tier}"


def former_names(*parts: tuple[str, str | None]) -> list[str]:
    """The names a joined name had before renames: each (current, former) part contributes its
    current name and, if set and different, its former one; every combination but the current
    one, joined with '-'. E.g. (("dc1", None), ("search", "web"), ("gemma", None)) ->
    ["dc1-web-gemma"]."""
    options = [[now, *([before] if before and before != now else [])] for now, before in parts]
    return ["-".join(combination) for combination in itertools.product(*options)][1:]


def pod_role_name(cluster: str, team: str, instance: str) -> str:
    """The Pulumi name of the IAM role a model's fetcher assumes on EKS (autonamed from it)."""
    return f"{cluster}-{team}-{instance}"


def node_tier_name(cluster: str, tier: str) -> str:
    """The Pulumi name of an EKS tier's NodeTier (its role and node group are named from it)."""
    return f"{cluster}-{tier}"


def eks_cluster_name(stack: str, cluster: str) -> str:
    """The EKS cluster's own name."""
    return f"{stack}-{cluster}"
