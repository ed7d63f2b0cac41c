"""How a LoadBalancer Service (the gateway's) is exposed: an AWS NLB on EKS, a MetalLB address
on-prem. Plain data that the Service component merges into its metadata and spec."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

AWS = "service.beta.kubernetes.io/aws-load-balancer-"
METALLB = "metallb.universe.tf/"


@dataclass(frozen=True)
class LoadBalancing:
    """What a LoadBalancer Service gets for one way of exposing it.

    Attributes:
        annotations: Annotations for the Service's metadata.
        spec: Fields for the Service's spec (`type: LoadBalancer` and more); default empty.
    """

    annotations: dict[str, str]
    spec: dict[str, Any] = field(default_factory=dict[str, Any])


def _spec(source_ranges: Sequence[str], extra: dict[str, Any]) -> dict[str, Any]:
    spec: dict[str, Any] = {"type": "LoadBalancer", **extra}
    if source_ranges:
        spec["loadBalancerSourceRanges"] = list(source_ranges)
    return spec


def aws_nlb(
    scheme: Literal["internal", "internet-facing"],
    drain_seconds: int,
    source_ranges: Sequence[str] = (),
) -> LoadBalancing:
    """An NLB made by the AWS Load Balancer Controller, targeting pod IPs in every zone.

    The NLB keeps sending to a stopping pod until its deregistration finishes, so that delay is
    the pod's drain window: shorter drops requests, longer only slows rollouts.
    """
    return LoadBalancing(
        annotations={
            f"{AWS}type": "external",
            f"{AWS}nlb-target-type": "ip",
            f"{AWS}scheme": scheme,
            f"{AWS}attributes": "load_balancing.cross_zone.enabled=true",
            f"{AWS}target-group-attributes": (
                f"deregistration_delay.timeout_seconds={drain_seconds}"
            ),
        },
        # Only the controller may take it: the legacy in-tree controller ignores these settings.
        spec=_spec(source_ranges, {"loadBalancerClass": "service.k8s.aws/nlb"}),
    )


def nlb_tls(certificate_arn: str, policy: str) -> dict[str, str]:
    """Annotations that make the NLB's port 443 a TLS listener with `certificate_arn` (ACM) and
    the security `policy`; it forwards plain TCP to the pods."""
    return {
        f"{AWS}ssl-cert": certificate_arn,
        f"{AWS}ssl-ports": "443",
        f"{AWS}ssl-negotiation-policy": policy,
    }


def metallb(pool: str, address: str | None, source_ranges: Sequence[str] = ()) -> LoadBalancing:
    """A MetalLB address from pool `pool` (annotation metallb.universe.tf/address-pool): `address`
    if given (metallb.universe.tf/loadBalancerIPs), else one MetalLB picks from the pool.
    Non-empty `source_ranges` become the Service's loadBalancerSourceRanges."""
    annotations = {f"{METALLB}address-pool": pool}
    if address:
        annotations[f"{METALLB}loadBalancerIPs"] = address
    return LoadBalancing(annotations=annotations, spec=_spec(source_ranges, {}))
