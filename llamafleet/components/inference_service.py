"""InferenceService: one model served on one tier, for one team.

Deployment (fetch-and-verify init container, probes, drain, zero-downtime rollout), Service,
PodDisruptionBudget, NetworkPolicy, ServiceAccount, the autoscaler (KEDA on the queue, or HPA on
CPU) and, where Prometheus Operator runs, a ServiceMonitor (llama-server's /metrics) and a
PodMonitor (the model fetcher's, while a pod is in Init: why its fetch fails).
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

import pulumi
import pulumi_kubernetes as k8s

from llamafleet.components.autoscaling import (
    Demand,
    ScalingRange,
    hpa_spec,
    scaled_object_annotations,
    scaled_object_spec,
)
from llamafleet.components.disruption import disruption_budget
from llamafleet.components.gateway import GATEWAY_APP, INTERNAL_KEY_MARK
from llamafleet.components.inference_pod import (
    FETCH_METRICS_PORT,
    FETCH_METRICS_PORT_NAME,
    PodInputs,
    pod_labels,
    pod_spec,
    selector_labels,
)
from llamafleet.components.manifest import manifest
from llamafleet.components.server_args import SERVER_PORT

IMDS_CIDR = "169.254.169.254/32"

# The Pulumi type of a ScaledObject (a CustomResource of keda.sh/v1alpha1).
SCALED_OBJECT = "kubernetes:keda.sh/v1alpha1:ScaledObject"


@dataclass(frozen=True)
class InferenceServiceArgs:
    """One model on one tier, for one team."""

    # The team's namespace.
    namespace: str
    # The objects' name in the namespace (the Pulumi name also carries team and cluster).
    instance: str
    # The `llamafleet.io/model` label.
    model_name: str
    # What the pod template is made from.
    pod: PodInputs
    # Replica bounds and the queue target of the autoscaler.
    scaling: ScalingRange
    # keda: a ScaledObject on the queue; hpa: a HorizontalPodAutoscaler on CPU.
    autoscaler: Literal["keda", "hpa"]
    # The Prometheus KEDA queries (the trigger's serverAddress); unused with hpa.
    prometheus_url: str
    # Also declare a ServiceMonitor and a PodMonitor (needs the Prometheus Operator's CRDs).
    service_monitor: bool
    # Name of the Secret (key `key`) whose API key the ServiceMonitor sends to /metrics.
    metrics_key_secret: str
    # Pods in these two namespaces may reach the server's port (8080) (NetworkPolicy ingress);
    # the monitoring namespace also the model fetcher's metrics port (9102).
    gateway_namespace: str
    monitoring_namespace: str
    # The gateway's demand for this deployment: a second KEDA trigger (None: the queue only).
    demand: Demand | None = None
    # The tier's nodes can be reclaimed by the cloud (EKS spot): the PodDisruptionBudget never
    # refuses a drain there (disruption.disruption_budget).
    reclaimable: bool = False
    # A non-secret mark of the key the gateway presents (gateway.keys_mark of the team's
    # internal key): llama-server reads its key file only at start, so a new key rolls the pods.
    internal_key_mark: pulumi.Input[str] | None = None
    # e.g. the IAM role (IRSA) the model fetcher assumes to read the store on EKS.
    service_account_annotations: Mapping[str, pulumi.Input[str]] = field(
        default_factory=dict[str, pulumi.Input[str]]
    )


def unknown() -> pulumi.Output[str]:
    """A value not known yet, as the engine marks one in a preview. A Deployment previewed with
    an input not known yet (a key being created) has no uid in its preview; an empty one would
    make its HPA's server-side dry run fail ("ownerReferences[0].uid: Required value"), while an
    unknown one is left to the update, where the uid is real."""
    loop = asyncio.get_event_loop()
    value: asyncio.Future[str] = loop.create_future()
    known: asyncio.Future[bool] = loop.create_future()
    value.set_result("")
    known.set_result(False)
    return pulumi.Output(set(), value, known)


class InferenceService(pulumi.ComponentResource):
    """The objects of the module docstring, all named `args.instance`.

    The Deployment starts with max(1, min_replicas) replicas; the autoscaler owns the count
    after. `url` is the OpenAI-compatible base URL inside the cluster,
    http://INSTANCE.NAMESPACE.svc.cluster.local:8080/v1.
    """

    deployment: k8s.apps.v1.Deployment
    service: k8s.core.v1.Service
    url: pulumi.Output[str]

    def __init__(
        self, name: str, args: InferenceServiceArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__("llamafleet:serving:InferenceService", name, None, opts)
        self._args = args
        child = pulumi.ResourceOptions(parent=self)
        instance = args.instance
        labels = pod_labels(instance, args.model_name, args.pod.tier_name)
        meta = self._meta(instance, labels)

        account = k8s.core.v1.ServiceAccount(
            f"{name}-sa",
            metadata=manifest(
                {**meta, "annotations": dict(args.service_account_annotations)}
                if args.service_account_annotations
                else meta
            ),
            automount_service_account_token=False,
            opts=child,
        )
        self.deployment = k8s.apps.v1.Deployment(
            f"{name}-deployment",
            metadata=manifest(meta),
            spec=manifest(self._deployment_spec(instance, labels)),
            # The autoscaler owns the replica count once the Deployment exists.
            opts=pulumi.ResourceOptions(
                parent=self, depends_on=[account], ignore_changes=["spec.replicas"]
            ),
        )
        self.service = k8s.core.v1.Service(
            f"{name}-service",
            metadata=manifest(meta),
            spec=manifest(
                {
                    "type": "ClusterIP",
                    "selector": selector_labels(instance),
                    "ports": [{"name": "http", "port": SERVER_PORT, "targetPort": "http"}],
                }
            ),
            opts=child,
        )
        k8s.policy.v1.PodDisruptionBudget(
            f"{name}-pdb",
            metadata=manifest(meta),
            # minAvailable 1 while the model runs one replica (a drain waits for a rollout),
            # else, and on spot nodes, maxUnavailable 1 (disruption.disruption_budget).
            spec=manifest(
                disruption_budget(
                    selector_labels(instance),
                    args.scaling.min_replicas,
                    reclaimable=args.reclaimable,
                )
            ),
            opts=child,
        )
        k8s.networking.v1.NetworkPolicy(
            f"{name}-netpol",
            metadata=manifest(meta),
            spec=manifest(self._network_policy(instance)),
            opts=child,
        )
        self._autoscaler(name, instance, meta)
        if args.service_monitor:
            self._service_monitor(name, instance, meta)
            self._pod_monitor(name, instance, meta)

        self.url = pulumi.Output.concat(
            "http://", instance, ".", args.namespace, ".svc.cluster.local:", str(SERVER_PORT), "/v1"
        )
        self.register_outputs({"url": self.url, "deployment": self.deployment.metadata["name"]})

    def _meta(self, name: str, labels: dict[str, str]) -> dict[str, Any]:
        return {"name": name, "namespace": self._args.namespace, "labels": labels}

    def _deployment_spec(self, name: str, labels: dict[str, str]) -> dict[str, Any]:
        args = self._args
        return {
            "replicas": max(1, args.scaling.min_replicas),
            "revisionHistoryLimit": 3,
            "selector": {"matchLabels": selector_labels(name)},
            # Never fewer ready pods than before: a new pod must pass readiness first.
            "strategy": {
                "type": "RollingUpdate",
                "rollingUpdate": {"maxUnavailable": 0, "maxSurge": 1},
            },
            "progressDeadlineSeconds": 1800,
            "template": {
                "metadata": {"labels": labels} | self._template_annotations(),
                "spec": pod_spec(args.pod, name),
            },
        }

    def _template_annotations(self) -> dict[str, Any]:
        mark = self._args.internal_key_mark
        return {} if mark is None else {"annotations": {INTERNAL_KEY_MARK: mark}}

    def _network_policy(self, name: str) -> dict[str, Any]:
        args = self._args

        def from_namespace(namespace: str) -> dict[str, Any]:
            return {
                "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": namespace}}
            }

        return {
            "podSelector": {"matchLabels": selector_labels(name)},
            "policyTypes": ["Ingress", "Egress"],
            "ingress": [
                {
                    "from": [
                        # The gateway's pods, not the whole namespace.
                        from_namespace(args.gateway_namespace)
                        | {"podSelector": {"matchLabels": {"app.kubernetes.io/name": GATEWAY_APP}}},
                        from_namespace(args.monitoring_namespace),
                    ],
                    "ports": [{"protocol": "TCP", "port": SERVER_PORT}],
                },
                # The model fetcher's metrics, scraped while the pod is in Init.
                {
                    "from": [from_namespace(args.monitoring_namespace)],
                    "ports": [{"protocol": "TCP", "port": FETCH_METRICS_PORT}],
                },
            ],
            "egress": [
                {
                    "to": [from_namespace("kube-system")],
                    "ports": [{"protocol": "UDP", "port": 53}, {"protocol": "TCP", "port": 53}],
                },
                # The init container reaches the model store; never the instance metadata API.
                {
                    "to": [{"ipBlock": {"cidr": "0.0.0.0/0", "except": [IMDS_CIDR]}}],
                    "ports": [{"protocol": "TCP", "port": args.pod.store.port}],
                },
            ],
        }

    def _autoscaler(self, name: str, instance: str, meta: dict[str, Any]) -> None:
        args = self._args
        if args.autoscaler == "keda":
            k8s.apiextensions.CustomResource(
                f"{name}-scaledobject",  # an alias of the HPA's: keep the two names together
                api_version="keda.sh/v1alpha1",
                kind="ScaledObject",
                metadata=manifest(meta | {"annotations": scaled_object_annotations()}),
                spec=scaled_object_spec(
                    instance,
                    args.namespace,
                    instance,
                    args.scaling,
                    args.prometheus_url,
                    hpa_name=instance,
                    demand=args.demand,
                ),
                opts=pulumi.ResourceOptions(parent=self, depends_on=[self.deployment]),
            )
        else:
            # Owned by its Deployment, so Kubernetes deletes it with the Deployment; Pulumi
            # never deletes it itself: when the cluster switches to KEDA, the ScaledObject has
            # taken this HPA over by the time Pulumi would delete it. Switching back, it
            # replaces the ScaledObject (the alias), which goes first: KEDA then deletes the HPA
            # of the same name it made, before this one is created (README: autoscalers).
            owner = {
                "apiVersion": "apps/v1",
                "kind": "Deployment",
                "name": self.deployment.metadata["name"],
                "uid": self.deployment.metadata.apply(lambda meta: meta.uid or unknown()),
            }
            k8s.autoscaling.v2.HorizontalPodAutoscaler(
                f"{name}-hpa",
                metadata=manifest(meta | {"ownerReferences": [owner]}),
                spec=manifest(hpa_spec(instance, args.scaling)),
                opts=pulumi.ResourceOptions(
                    parent=self,
                    depends_on=[self.deployment],
                    retain_on_delete=True,
                    aliases=[pulumi.Alias(name=f"{name}-scaledobject", type_=SCALED_OBJECT)],
                    # The provider would patch the ScaledObject into an HPA in place.
                    replace_on_changes=["kind"],
                    delete_before_replace=True,
                ),
            )

    def _service_monitor(self, name: str, instance: str, meta: dict[str, Any]) -> None:
        k8s.apiextensions.CustomResource(
            f"{name}-servicemonitor",
            api_version="monitoring.coreos.com/v1",
            kind="ServiceMonitor",
            metadata=manifest(meta),
            spec={
                "selector": {"matchLabels": selector_labels(instance)},
                "endpoints": [
                    {
                        "port": "http",
                        "path": "/metrics",
                        "interval": "15s",
                        # With --api-key, /metrics needs a key too.
                        "authorization": {
                            "type": "Bearer",
                            "credentials": {"name": self._args.metrics_key_secret, "key": "key"},
                        },
                    }
                ],
            },
            opts=pulumi.ResourceOptions(parent=self, depends_on=[self.service]),
        )

    def _pod_monitor(self, name: str, instance: str, meta: dict[str, Any]) -> None:
        """The model fetcher's metrics (failed attempts by reason), scraped from its
        `fetch-metrics` port while the pod is Pending: Prometheus lists an init container's
        ports for the pod's whole life, so once the fetch is done (the pod Running) the port
        is dropped rather than scraped as a target that is down."""
        k8s.apiextensions.CustomResource(
            f"{name}-podmonitor",
            api_version="monitoring.coreos.com/v1",
            kind="PodMonitor",
            metadata=manifest(meta),
            spec={
                "selector": {"matchLabels": selector_labels(instance)},
                "podMetricsEndpoints": [
                    {
                        "port": FETCH_METRICS_PORT_NAME,
                        "path": "/metrics",
                        "interval": "15s",
                        "relabelings": [
                            {
                                "sourceLabels": ["__meta_kubernetes_pod_phase"],
                                "regex": "Pending",
                                "action": "keep",
                            }
                        ],
                    }
                ],
            },
            opts=pulumi.ResourceOptions(parent=self, depends_on=[self.deployment]),
        )
