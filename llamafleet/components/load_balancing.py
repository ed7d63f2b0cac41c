"""How a LoadBalancer Service (the gateway's) is exposed: an AWS NLB on EKS, a MetalLB address
on-prem. Plain data that the Service component merges into its metadata and spec, and labels for
the namespace of the pods it sends to."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

AWS = "service.beta.kubernetes.io/aws-load-balancer-"
METALLB = "metallb.universe.tf/"
# On a namespace: the AWS Load Balancer Controller's webhook gives each new pod there that an
# NLB/ALB targets by IP the readiness gate `target-health.elbv2.k8s.aws/<binding>`, True only
# once the target group sees the pod healthy (kubernetes-sigs.github.io/aws-load-balancer-
# controller/latest/deploy/pod_readiness_gate/; IP targets only).
NLB_READINESS_GATE_INJECT = {"elbv2.k8s.aws/pod-readiness-gate-inject": "enabled"}


@dataclass(frozen=True)
class LoadBalancing:
    """What a LoadBalancer Service gets for one way of exposing it.

    Attributes:
        annotations: Annotations for the Service's metadata.
        spec: Fields for the Service's spec (`type: LoadBalancer` and more); default empty.
        namespace_labels: Labels for the namespace of the Service and its pods; default empty.
    """

    annotations: dict[str, str]
    spec: dict[str, Any] = field(default_factory=dict[str, Any])
    namespace_labels: dict[str, str] = field(default_factory=dict[str, str])


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

    The NLB keeps sending to a stopping pod until its deregistration finishes, so that delay
    (`drain_seconds`, the stack's `serving.deregistrationSeconds`, which the pods' preStop also
    waits out) is the pod's drain window: shorter drops requests, longer only slows rollouts.

    IP targets (`nlb-target-type: ip`): the NLB sends to the pods' own addresses, never through
    a node's port, so `externalTrafficPolicy` (what kube-proxy does with load-balancer traffic
    that arrives at a node; Kubernetes API, ServiceSpec) is left unset: there is no node hop to
    keep local, and a drained node carries no traffic for other nodes' pods. The gateway's
    namespace gets NLB_READINESS_GATE_INJECT, so a rolling update stops an old gateway pod only
    once the NLB sees the new one healthy (the controller's readiness gate), not merely once its
    own probe passes while the target is still `initial`.
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
        namespace_labels=dict(NLB_READINESS_GATE_INJECT),
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
    Non-empty `source_ranges` become the Service's loadBalancerSourceRanges.

    `externalTrafficPolicy: Cluster`, said explicitly (the API's default), and not `Local`: this
    stack's MetalLB announces in layer 2 mode (an L2Advertisement, OnPremCluster), where all
    traffic for the address goes to one elected node and kube-proxy there spreads it over every
    gateway pod (metallb.universe.tf/concepts/layer2/). With `Local` the election counts only
    nodes with a ready gateway pod ("external traffic policy, active endpoints", ibid.) and
    kube-proxy sends only to that node's own pods, so (1) one gateway pod, the gateway spreads
    one per node, would take every external request, and (2) each time the elected node's pod
    goes (a gateway rollout, a drain) the address moves to another node, whose kube-proxy has no
    state for the connections already open: every stream in flight through it is reset, the very
    drop a drain must avoid. With `Cluster` the election ignores pods: a rollout or the drain of
    another node leaves the address where it is, and the terminating pod finishes its requests
    (its preStop and grace period). The costs: the client's address reaches the gateway as the
    elected node's (SNAT; the gateway limits by key, not by address), and one hop between nodes.
    `Local` suits BGP mode (routers spread over the nodes that have pods), which the stack does
    not declare.
    """
    annotations = {f"{METALLB}address-pool": pool}
    if address:
        annotations[f"{METALLB}loadBalancerIPs"] = address
    return LoadBalancing(
        annotations=annotations,
        spec=_spec(source_ranges, {"externalTrafficPolicy": "Cluster"}),
    )
