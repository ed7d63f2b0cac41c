"""Gateway: one OpenAI endpoint per cluster, in front of every team's model deployments.

LiteLLM's proxy (pinned with hashes, images/gateway) with the llamafleet_gateway plugin: client
keys are checked against their hashes and end here; a request goes to the caller's team's own
deployment of the model it names, on the first tier with room; per-team limits are shared by the
replicas through Redis. Declared in the gateway namespace: the namespace (Pod Security
`restricted`, a default-deny NetworkPolicy), a ConfigMap (LiteLLM's config and the routing
table), Secrets (the key hashes, mounted so a key change is read live; the teams' internal keys
and the master key, as environment; Redis's config), the gateway's Deployment, Service (the
cluster's only load-balanced entry: LoadBalancer, or ClusterIP where the cluster has none),
PodDisruptionBudget, HPA and NetworkPolicy, and Redis with its own Service and NetworkPolicy.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import pulumi
import pulumi_kubernetes as k8s
import yaml
from pydantic import Field, model_validator

from llamafleet.components.api_keys import ApiKey
from llamafleet.components.autoscaling import cpu_metric
from llamafleet.components.config import (
    AcmCertificateArn,
    CaCertificate,
    ComponentConfig,
    DnsName,
    KubernetesName,
)
from llamafleet.components.disruption import disruption_budget
from llamafleet.components.gateway_config import (
    CONFIG_DIR,
    CONFIG_FILE,
    GATEWAY_PORT,
    KEYS_DIR,
    KEYS_FILE,
    METRICS_PORT,
    PEER_CA_FILE,
    REDIS_PORT,
    ROUTES_FILE,
    Backend,
    TeamLimits,
    internal_key_env,
    litellm_config,
    longest_call_seconds,
    peer_key_env,
    routes,
)
from llamafleet.components.load_balancing import LoadBalancing, nlb_tls
from llamafleet.components.manifest import manifest
from llamafleet.components.pod_security import (
    container_security_context,
    pod_security_context,
    restricted_namespace_labels,
)
from llamafleet.components.server_args import SERVER_PORT
from llamafleet_gateway import environment
from llamafleet_gateway.routes import PEER

GATEWAY_APP = "llamafleet-gateway"
REDIS_APP = "llamafleet-gateway-redis"
# Marks on the pod template that roll the gateway when what it reads only at start changes
# (LiteLLM's config, the backends' keys); the routing table and the key hashes are read live.
CONFIG_MARK = "llamafleet.io/config"
BACKEND_KEYS_MARK = "llamafleet.io/backend-keys"
# The same on a team's llama-server pods, for the one key they accept from the gateway.
INTERNAL_KEY_MARK = "llamafleet.io/gateway-key"
ENV_SECRETS_REASON = "LiteLLM reads these secrets only from environment variables"
TLS_SECRET = "llamafleet-gateway-tls"  # noqa: S105 (a Secret's name)
TLS_DIR = "/etc/llamafleet/tls"
HTTPS_PORT = 443
# A request that no event ended is forgotten this long after the longest one could last.
LONGEST_CALL_SLACK_SECONDS = 60
# TLS 1.3 and 1.2 only (AWS's recommended NLB policy).
NLB_TLS_POLICY = "ELBSecurityPolicy-TLS13-1-2-2021-06"


class GatewayConfig(ComponentConfig):
    """The gateway's size (`llamafleet:serving.gateway` in a stack's settings).

    Raises:
        pydantic.ValidationError: a value out of range, or minReplicas above maxReplicas.
    """

    min_replicas: int = Field(
        default=2,
        ge=1,
        le=50,
        description="Fewest gateway pods (2: one may be drained or rolled while the other serves).",
    )
    max_replicas: int = Field(
        default=6, ge=1, le=100, description="Most gateway pods (an HPA on CPU scales between)."
    )
    cpus: float = Field(
        default=1, gt=0, le=16, description="CPU request and limit of a gateway pod."
    )
    memory_mib: int = Field(
        default=1024,
        ge=512,
        le=16384,
        description="Memory request and limit of a gateway pod, MiB (LiteLLM's proxy idles at "
        "about 300 MiB; benchmarks/README.md).",
    )

    @model_validator(mode="after")
    def _range(self) -> GatewayConfig:
        if self.min_replicas > self.max_replicas:
            raise ValueError(
                f"minReplicas {self.min_replicas} is above maxReplicas {self.max_replicas}"
            )
        return self


class CertManagerIssuer(ComponentConfig):
    """A cert-manager issuer that signs the gateway's certificate (a Certificate object)."""

    name: KubernetesName = Field(description="The Issuer or ClusterIssuer.")
    kind: Literal["ClusterIssuer", "Issuer"] = Field(
        default="ClusterIssuer", description="ClusterIssuer, or an Issuer of the namespace."
    )
    dns_names: list[DnsName] = Field(
        min_length=1, max_length=20, description="The names clients reach the gateway by."
    )


class GatewayTls(ComponentConfig):
    """TLS for the gateway's endpoint (`llamafleet:clusters.<c>.loadBalancer.tls`): one of an
    ACM certificate the AWS NLB terminates TLS with (EKS), or a certificate the gateway serves
    itself, from a kubernetes.io/tls Secret or signed by cert-manager (on-prem).

    Raises:
        pydantic.ValidationError: not exactly one of the three.
    """

    certificate_arn: AcmCertificateArn | None = Field(
        default=None, description="EKS: the ACM certificate the NLB's TLS listener (443) uses."
    )
    secret_name: KubernetesName | None = Field(
        default=None,
        description="A kubernetes.io/tls Secret in the gateway's namespace (tls.crt, tls.key).",
    )
    cert_manager: CertManagerIssuer | None = Field(
        default=None, description="cert-manager signs the certificate (a Certificate object)."
    )
    ca_certificate: CaCertificate | None = Field(
        default=None,
        description="The CA certificate(s), PEM, that sign the gateway's certificate where a "
        "private CA does: the other clusters' gateways trust it, with the public CAs, to reach "
        "this one. Not needed for a public CA (e.g. ACM's).",
    )

    @model_validator(mode="after")
    def _exactly_one(self) -> GatewayTls:
        given = [self.certificate_arn, self.secret_name, self.cert_manager]
        if sum(value is not None for value in given) != 1:
            raise ValueError("give exactly one of certificateArn, secretName, certManager")
        return self

    @property
    def at_gateway(self) -> bool:
        """The gateway pods serve TLS themselves (not the load balancer)."""
        return self.certificate_arn is None

    @property
    def secret(self) -> str:
        """The Secret the gateway's pods mount (the given one, or cert-manager's)."""
        return self.secret_name or TLS_SECRET


@dataclass(frozen=True)
class Peer:
    """Another cluster's gateway, which this one forwards that cluster's tiers to.

    Attributes:
        cluster: The other cluster's name.
        key: The peer key that gateway accepts (a secret Output; its own `GatewayArgs.peer_key`).
        cidr: Where its load balancer's addresses are (the EKS VPC, or the on-prem address as
            a /32): this gateway's NetworkPolicy lets it reach port 443 there.
        ca_certificate: The private CA (PEM) its certificate is signed by; None: a public CA.
    """

    cluster: str
    key: pulumi.Input[str]
    cidr: str
    ca_certificate: str | None = None


@dataclass(frozen=True)
class GatewayArgs:
    """One cluster's gateway.

    Attributes:
        namespace: The gateway's namespace (`serving.gatewayNamespace`).
        config: Its size.
        image: The gateway image (images/gateway), by digest.
        redis_image: Its Redis image (images/redis), by digest.
        backends: Every team x model x tier it routes to, each model's tiers in order.
        limits: Per-team limits per minute (absent: none).
        team_keys: Team -> its client keys (secret Outputs); only their hashes reach the gateway.
        internal_keys: Team -> the key its llama-servers accept from the gateway (a secret
            Output, e.g. Tenant.internal_key).
        team_namespaces: The namespaces its pods may reach (the teams' model pods, port 8080).
        monitoring_namespace: Pods there may scrape its metrics port (9090).
        request_timeout_seconds: The longest request; the gateway's own timeouts.
        exposure: How its Service is exposed (LoadBalancing; its `namespace_labels` go on the
            gateway's namespace), or None: ClusterIP (a cluster with no load balancer, e.g. the
            local control plane).
        tls: TLS for its endpoint; None: plain HTTP (the local control plane only).
        service_monitor: Also declare a Service for its metrics port and a ServiceMonitor
            (Prometheus Operator), so the per-tier demand reaches Prometheus and KEDA.
        hostname: The DNS name its load balancer is reached by (the TLS certificate covers it):
            `endpoint` is then `https://<hostname>/v1`.
        peer_key: The key other clusters' gateways present here (its hash joins the team key
            hashes), or None where no other cluster routes here.
        peers: The other clusters' gateways that `backends` with a `peer` go through.
    """

    namespace: str
    config: GatewayConfig
    image: pulumi.Input[str]
    redis_image: pulumi.Input[str]
    backends: Sequence[Backend]
    limits: Mapping[str, TeamLimits]
    team_keys: Mapping[str, pulumi.Input[Sequence[str]]]
    internal_keys: Mapping[str, pulumi.Input[str]]
    team_namespaces: Sequence[str]
    monitoring_namespace: str
    request_timeout_seconds: int
    exposure: LoadBalancing | None
    tls: GatewayTls | None = None
    service_monitor: bool = False
    hostname: str | None = None
    peer_key: pulumi.Input[str] | None = None
    peers: Sequence[Peer] = ()


def key_hashes(team_keys: Mapping[str, Sequence[str]]) -> str:
    """The hashes file the plugin reads: {hex sha256 of a key: team}, as JSON (sorted). The
    peer key is listed under `routes.PEER`."""
    return json.dumps(
        {
            hashlib.sha256(key.encode()).hexdigest(): team
            for team, keys in sorted(team_keys.items())
            for key in keys
        },
        sort_keys=True,
    )


def key_mark(key: pulumi.Input[str]) -> pulumi.Output[str]:
    """A non-secret mark of one high-entropy key (16 hex of its SHA-256): it changes with the
    key and reveals nothing a 286-bit key could be searched from. Unsecret on purpose: a secret
    on a pod template would mark the whole Deployment secret, hiding it from previews."""
    return pulumi.Output.unsecret(
        pulumi.Output.from_input(key).apply(lambda k: hashlib.sha256(k.encode()).hexdigest()[:16])
    )


def keys_mark(keys: Mapping[str, str]) -> str:
    """A non-secret mark of a set of high-entropy keys (16 hex of a SHA-256 over them): it
    changes when any key does, and reveals nothing a 286-bit key could be searched from."""
    joined = "\n".join(f"{team}={key}" for team, key in sorted(keys.items()))
    return hashlib.sha256(joined.encode()).hexdigest()[:16]


class Gateway(pulumi.ComponentResource):
    """The objects of the module docstring, for one cluster.

    `url` is the gateway's OpenAI base URL inside the cluster (`in_cluster_url`); `address` the
    load balancer's hostname or IP once the cloud or MetalLB gave it one (None before, and for
    ClusterIP): the endpoint clients outside the cluster reach, on 443 with TLS; `endpoint` the
    OpenAI base URL by `hostname` where one is set, else `url`.
    """

    url: pulumi.Output[str]
    address: pulumi.Output[str | None]
    endpoint: pulumi.Output[str]
    service: k8s.core.v1.Service
    deployment: k8s.apps.v1.Deployment

    def __init__(
        self, name: str, args: GatewayArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__("llamafleet:serving:Gateway", name, None, opts)
        self._args = args
        self._name = name
        namespace = k8s.core.v1.Namespace(
            f"{name}-namespace",
            metadata=manifest(
                {
                    "name": args.namespace,
                    "labels": {
                        **self._labels(GATEWAY_APP),
                        **restricted_namespace_labels(),
                        # EKS: the AWS Load Balancer Controller's readiness gate on its pods.
                        **(args.exposure.namespace_labels if args.exposure else {}),
                    },
                }
            ),
            opts=pulumi.ResourceOptions(parent=self),
        )
        self._inside = pulumi.ResourceOptions(parent=self, depends_on=[namespace])
        k8s.networking.v1.NetworkPolicy(
            f"{name}-default-deny",
            metadata=self._meta("default-deny"),
            spec=manifest({"podSelector": {}, "policyTypes": ["Ingress", "Egress"]}),
            opts=self._inside,
        )
        master = ApiKey(f"{name}-master-key", "master", opts=pulumi.ResourceOptions(parent=self))
        redis_password = ApiKey(
            f"{name}-redis-password", "redis", opts=pulumi.ResourceOptions(parent=self)
        )
        config_text = yaml.safe_dump(
            litellm_config(args.backends, args.request_timeout_seconds, (REDIS_APP, REDIS_PORT)),
            sort_keys=True,
        )
        routes_text = routes(args.backends, args.limits).to_json()
        files = {CONFIG_FILE: config_text, ROUTES_FILE: routes_text}
        peer_cas = peer_ca_bundle(args.peers)
        if peer_cas is not None:
            files[PEER_CA_FILE] = peer_cas
        k8s.core.v1.ConfigMap(
            f"{name}-config",
            metadata=self._meta(GATEWAY_APP),
            data=files,
            opts=self._inside,
        )
        keys: dict[str, pulumi.Input[Sequence[str]]] = dict(args.team_keys)
        if args.peer_key is not None:
            keys[PEER] = pulumi.Output.from_input(args.peer_key).apply(lambda key: [key])
        hashes = pulumi.Output.all(**keys).apply(key_hashes)
        self._secret(f"{name}-keys", f"{GATEWAY_APP}-keys", {KEYS_FILE: hashes})
        backend_keys: dict[str, pulumi.Input[str]] = {
            **{internal_key_env(team): key for team, key in args.internal_keys.items()},
            **{peer_key_env(peer.cluster): peer.key for peer in args.peers},
        }
        internal = pulumi.Output.all(**backend_keys)
        env_secrets: dict[str, pulumi.Input[str]] = dict(backend_keys)
        env_secrets["LITELLM_MASTER_KEY"] = pulumi.Output.concat("sk-", master.value)
        env_secrets["REDIS_PASSWORD"] = redis_password.value
        self._secret(f"{name}-env", f"{GATEWAY_APP}-env", env_secrets)
        self._secret(
            f"{name}-redis-config",
            f"{REDIS_APP}-config",
            {"redis.conf": redis_password.value.apply(_redis_conf)},
        )
        marks = {
            # LiteLLM reads its config (and the peers' CAs) once; the plugin re-reads the
            # routing table live.
            CONFIG_MARK: hashlib.sha256((config_text + (peer_cas or "")).encode()).hexdigest()[:16],
            BACKEND_KEYS_MARK: pulumi.Output.unsecret(internal.apply(keys_mark)),
        }
        if args.tls is not None and args.tls.cert_manager is not None:
            self._certificate(args.tls.cert_manager)
        self.deployment = self._gateway(marks)
        self.service = self._service()
        if args.service_monitor:
            self._monitoring()
        self._redis()
        self.url = pulumi.Output.from_input(in_cluster_url(args))
        self.address = self.service.status.apply(_load_balancer_address)
        self.endpoint = (
            self.url
            if args.hostname is None
            else pulumi.Output.from_input(f"https://{args.hostname}/v1")
        )
        self.register_outputs({"url": self.url, "address": self.address, "endpoint": self.endpoint})

    def _labels(self, app: str) -> dict[str, str]:
        return {"app.kubernetes.io/name": app, "app.kubernetes.io/part-of": "llamafleet"}

    def _meta(self, object_name: str) -> Any:
        return manifest(
            {
                "name": object_name,
                "namespace": self._args.namespace,
                "labels": self._labels(GATEWAY_APP),
            }
        )

    def _monitoring(self) -> None:
        """A ClusterIP Service for the plugin's metrics port and its ServiceMonitor: the
        load-balanced Service exposes only the OpenAI port."""
        name = f"{GATEWAY_APP}-metrics"
        service = k8s.core.v1.Service(
            f"{self._name}-metrics-service",
            metadata=self._meta(name),
            spec=manifest(
                {
                    "type": "ClusterIP",
                    "selector": self._labels(GATEWAY_APP),
                    "ports": [{"name": "metrics", "port": METRICS_PORT, "targetPort": "metrics"}],
                }
            ),
            opts=self._inside,
        )
        k8s.apiextensions.CustomResource(
            f"{self._name}-servicemonitor",
            api_version="monitoring.coreos.com/v1",
            kind="ServiceMonitor",
            metadata=self._meta(name),
            spec={
                "selector": {"matchLabels": self._labels(GATEWAY_APP)},
                "endpoints": [{"port": "metrics", "path": "/metrics", "interval": "15s"}],
            },
            opts=pulumi.ResourceOptions(parent=self, depends_on=[service]),
        )

    def _certificate(self, issuer: CertManagerIssuer) -> None:
        """cert-manager's Certificate, which keeps TLS_SECRET signed and renewed."""
        k8s.apiextensions.CustomResource(
            f"{self._name}-certificate",
            api_version="cert-manager.io/v1",
            kind="Certificate",
            metadata=self._meta(TLS_SECRET),
            spec={
                "secretName": TLS_SECRET,
                # The clients' names, and the Service's, so in-cluster callers verify it too.
                "dnsNames": [
                    *issuer.dns_names,
                    f"{GATEWAY_APP}.{self._args.namespace}.svc",
                    f"{GATEWAY_APP}.{self._args.namespace}.svc.cluster.local",
                ],
                "issuerRef": {"name": issuer.name, "kind": issuer.kind},
                "privateKey": {"algorithm": "ECDSA", "size": 256, "rotationPolicy": "Always"},
            },
            opts=self._inside,
        )

    def _secret(self, resource: str, object_name: str, data: Mapping[str, Any]) -> None:
        k8s.core.v1.Secret(
            resource,
            metadata=self._meta(object_name),
            type="Opaque",
            string_data={key: pulumi.Output.secret(value) for key, value in data.items()},
            opts=self._inside,
        )

    def _gateway(self, marks: Mapping[str, pulumi.Input[str]]) -> k8s.apps.v1.Deployment:
        args, name = self._args, self._name
        selector = self._labels(GATEWAY_APP)
        deployment = k8s.apps.v1.Deployment(
            f"{name}-deployment",
            metadata=manifest(
                {
                    "name": GATEWAY_APP,
                    "namespace": args.namespace,
                    "labels": self._labels(GATEWAY_APP),
                    # LiteLLM takes its backends' keys, its master key and Redis's password
                    # only as `os.environ/NAME` references: they come from a Secret as
                    # environment (never argv or the ConfigMap); everything else is a file.
                    "annotations": {"checkov.io/skip1": f"CKV_K8S_35={ENV_SECRETS_REASON}"},
                }
            ),
            spec=manifest(
                {
                    "replicas": args.config.min_replicas,
                    "revisionHistoryLimit": 3,
                    "selector": {"matchLabels": selector},
                    "strategy": {
                        "type": "RollingUpdate",
                        "rollingUpdate": {"maxUnavailable": 0, "maxSurge": 1},
                    },
                    "template": {
                        "metadata": {"labels": selector, "annotations": dict(marks)},
                        "spec": gateway_pod_spec(args),
                    },
                }
            ),
            # The HPA owns the replica count once the Deployment exists.
            opts=pulumi.ResourceOptions(
                parent=self, depends_on=self._inside.depends_on, ignore_changes=["spec.replicas"]
            ),
        )
        meta = self._meta(GATEWAY_APP)
        k8s.policy.v1.PodDisruptionBudget(
            f"{name}-pdb",
            metadata=meta,
            # With two or more, one pod at a time, so one always serves during a drain; with
            # minReplicas 1, the lone pod is never evicted: a drain waits for a rollout
            # (`kubectl rollout restart`) to start its replacement elsewhere first.
            spec=manifest(disruption_budget(selector, args.config.min_replicas)),
            opts=self._inside,
        )
        k8s.autoscaling.v2.HorizontalPodAutoscaler(
            f"{name}-hpa",
            metadata=meta,
            spec=manifest(
                {
                    "scaleTargetRef": {
                        "apiVersion": "apps/v1",
                        "kind": "Deployment",
                        "name": GATEWAY_APP,
                    },
                    "minReplicas": args.config.min_replicas,
                    "maxReplicas": args.config.max_replicas,
                    "metrics": [cpu_metric()],
                }
            ),
            opts=pulumi.ResourceOptions(parent=self, depends_on=[deployment]),
        )
        k8s.networking.v1.NetworkPolicy(
            f"{name}-netpol",
            metadata=meta,
            spec=manifest(gateway_network_policy(args)),
            opts=self._inside,
        )
        return deployment

    def _service(self) -> k8s.core.v1.Service:
        args = self._args
        exposure = args.exposure
        # Only the OpenAI port: the metrics port is scraped from inside the cluster. With TLS,
        # 443 (at the NLB, or at the pods) forwards to the pods' port.
        port = (
            {"name": "https", "port": HTTPS_PORT, "targetPort": "http"}
            if args.tls is not None
            else {"name": "http", "port": GATEWAY_PORT, "targetPort": "http"}
        )
        spec: dict[str, Any] = {
            "type": "ClusterIP",
            "selector": self._labels(GATEWAY_APP),
            "ports": [port],
        }
        metadata: dict[str, Any] = {
            "name": GATEWAY_APP,
            "namespace": args.namespace,
            "labels": self._labels(GATEWAY_APP),
        }
        annotations: dict[str, str] = {}
        if exposure is not None:
            spec |= exposure.spec
            annotations |= exposure.annotations
        if args.tls is not None and args.tls.certificate_arn is not None:
            annotations |= nlb_tls(args.tls.certificate_arn, NLB_TLS_POLICY)
        if annotations:
            metadata["annotations"] = annotations
        return k8s.core.v1.Service(
            f"{self._name}-service",
            metadata=manifest(metadata),
            spec=manifest(spec),
            opts=self._inside,
        )

    def _redis(self) -> None:
        args, name = self._args, self._name
        labels = self._labels(REDIS_APP)
        meta = manifest({"name": REDIS_APP, "namespace": args.namespace, "labels": labels})
        k8s.apps.v1.Deployment(
            f"{name}-redis-deployment",
            metadata=meta,
            spec=manifest(
                {
                    "replicas": 1,
                    "revisionHistoryLimit": 3,
                    "selector": {"matchLabels": labels},
                    # One pod: a limit window restarts empty, which only forgives a minute.
                    "strategy": {"type": "Recreate"},
                    "template": {"metadata": {"labels": labels}, "spec": redis_pod_spec(args)},
                }
            ),
            opts=self._inside,
        )
        k8s.core.v1.Service(
            f"{name}-redis-service",
            metadata=meta,
            spec=manifest(
                {
                    "type": "ClusterIP",
                    "selector": labels,
                    "ports": [{"name": "redis", "port": REDIS_PORT, "targetPort": "redis"}],
                }
            ),
            opts=self._inside,
        )
        k8s.networking.v1.NetworkPolicy(
            f"{name}-redis-netpol",
            metadata=meta,
            spec=manifest(
                {
                    "podSelector": {"matchLabels": labels},
                    "policyTypes": ["Ingress", "Egress"],
                    "ingress": [
                        {
                            "from": [{"podSelector": {"matchLabels": self._labels(GATEWAY_APP)}}],
                            "ports": [{"protocol": "TCP", "port": REDIS_PORT}],
                        }
                    ],
                    "egress": [],
                }
            ),
            opts=self._inside,
        )


def in_cluster_url(args: GatewayArgs) -> str:
    """The gateway's OpenAI base URL inside the cluster, by its Service: https on 443 where the
    gateway serves TLS itself; plain http on 443 where the NLB terminates TLS (the Service
    forwards plain HTTP); plain http on 4000 without TLS."""
    host = f"{GATEWAY_APP}.{args.namespace}.svc.cluster.local"
    if args.tls is None:
        return f"http://{host}:{GATEWAY_PORT}/v1"
    scheme = "https" if args.tls.at_gateway else "http"
    return f"{scheme}://{host}:{HTTPS_PORT}/v1"


def _load_balancer_address(status: Any) -> str | None:
    ingress = getattr(getattr(status, "load_balancer", None), "ingress", None) or []
    first = ingress[0] if ingress else None
    return None if first is None else (getattr(first, "hostname", None) or first.ip)


def _redis_conf(password: str) -> str:
    # No persistence (the counters live a minute); the password only in this mounted file.
    return (
        f'port {REDIS_PORT}\nbind 0.0.0.0\nprotected-mode yes\nsave ""\nappendonly no\n'
        f"dir /data\nrequirepass {password}\n"
    )


def _resources(cpus: float, memory_mib: int) -> dict[str, Any]:
    amounts = {"cpu": f"{cpus:g}", "memory": f"{memory_mib}Mi"}
    return {"requests": amounts, "limits": amounts}


def peer_ca_bundle(peers: Sequence[Peer]) -> str | None:
    """The private CAs of the peers that have one, PEM, one after another; None when none
    has (the gateway then trusts the public CAs only)."""
    found = [peer.ca_certificate.strip() for peer in peers if peer.ca_certificate]
    return "\n".join(found) + "\n" if found else None


def gateway_environment(
    config_dir: str = CONFIG_DIR,
    keys_dir: str = KEYS_DIR,
    metrics_port: int = METRICS_PORT,
    *,
    peer_cas: bool = False,
    redis: str | None = None,
    longest_call: int | None = None,
) -> dict[str, str]:
    """The gateway's plain environment (its secrets come from a Secret): where the plugin
    reads the routing table and the key hashes, its metrics port, with `peer_cas` where the
    entrypoint finds the peers' private CAs, with `redis` (host:port) where the replicas share
    their requests in flight, with `longest_call` (seconds) after which a request no event
    ended stops counting, and LiteLLM's switches for what the gateway does not serve: no
    admin UI, no API docs, no telemetry, no fetch of its cost map from the internet."""
    env = {
        environment.ROUTES: f"{config_dir}/{ROUTES_FILE}",
        environment.KEYS: f"{keys_dir}/{KEYS_FILE}",
        environment.METRICS_PORT: str(metrics_port),
        "DISABLE_ADMIN_UI": "True",
        "NO_DOCS": "True",
        "LITELLM_TELEMETRY": "False",
        # LiteLLM fetches its model cost map from GitHub at start; use the one it ships.
        "LITELLM_LOCAL_MODEL_COST_MAP": "True",
    }
    if peer_cas:
        env[environment.PEER_CA] = f"{config_dir}/{PEER_CA_FILE}"
    if redis is not None:
        env[environment.REDIS] = redis
    if longest_call is not None:
        env[environment.LONGEST_CALL] = str(longest_call + LONGEST_CALL_SLACK_SECONDS)
    return env


def gateway_argv(config_file: str, host: str, port: int, tls_dir: str | None = None) -> list[str]:
    """LiteLLM proxy's arguments: its config, the address, one worker (scale by replicas) and,
    with `tls_dir` (a kubernetes.io/tls Secret's files), TLS served by the gateway itself."""
    argv = ["--config", config_file, "--host", host, "--port", str(port), "--num_workers", "1"]
    if tls_dir is not None:
        argv += [
            "--ssl_certfile_path",
            f"{tls_dir}/tls.crt",
            "--ssl_keyfile_path",
            f"{tls_dir}/tls.key",
        ]
    return argv


def gateway_pod_spec(args: GatewayArgs) -> dict[str, Any]:
    """The gateway's PodSpec: LiteLLM's proxy on 4000 (one worker; scale by replicas), the
    plugin's metrics on 9090, probes on LiteLLM's health routes, config and key hashes mounted
    read-only, secrets as environment from one Secret, a writable /tmp on a read-only root."""
    config = args.config
    env_from_secret = [
        *(internal_key_env(team) for team in sorted(args.internal_keys)),
        *(peer_key_env(peer.cluster) for peer in args.peers),
        "LITELLM_MASTER_KEY",
        "REDIS_PASSWORD",
    ]
    env: list[dict[str, Any]] = [
        *(
            {"name": name, "value": value}
            for name, value in gateway_environment(
                peer_cas=peer_ca_bundle(args.peers) is not None,
                redis=f"{REDIS_APP}:{REDIS_PORT}",
                longest_call=longest_call_seconds(args.backends, args.request_timeout_seconds),
            ).items()
        ),
        *(
            {
                "name": variable,
                "valueFrom": {"secretKeyRef": {"name": f"{GATEWAY_APP}-env", "key": variable}},
            }
            for variable in env_from_secret
        ),
    ]

    tls = args.tls is not None and args.tls.at_gateway
    scheme = "HTTPS" if tls else "HTTP"

    def probe(path: str, period: int, failures: int) -> dict[str, Any]:
        return {
            "httpGet": {"path": path, "port": "http", "scheme": scheme},
            "periodSeconds": period,
            "timeoutSeconds": 5,
            "failureThreshold": failures,
        }

    return {
        "securityContext": pod_security_context(),
        "automountServiceAccountToken": False,
        # A request may be held while a tier wakes, then served: let the longest finish.
        "terminationGracePeriodSeconds": longest_call_seconds(
            args.backends, args.request_timeout_seconds
        )
        + 15,
        "containers": [
            {
                "name": "gateway",
                "image": args.image,
                # The pod's address; the NetworkPolicy guards it.
                "args": gateway_argv(
                    f"{CONFIG_DIR}/{CONFIG_FILE}",
                    "0.0.0.0",  # noqa: S104
                    GATEWAY_PORT,
                    TLS_DIR if tls else None,
                ),
                "env": env,
                "ports": [
                    {"name": "http", "containerPort": GATEWAY_PORT},
                    {"name": "metrics", "containerPort": METRICS_PORT},
                ],
                "startupProbe": probe("/health/liveliness", 5, 36),
                "readinessProbe": probe("/health/readiness", 10, 3),
                "livenessProbe": probe("/health/liveliness", 20, 3),
                "lifecycle": {"preStop": {"sleep": {"seconds": 5}}},
                "resources": _resources(config.cpus, config.memory_mib),
                "securityContext": container_security_context(),
                "volumeMounts": [
                    {"name": "config", "mountPath": CONFIG_DIR, "readOnly": True},
                    {"name": "keys", "mountPath": KEYS_DIR, "readOnly": True},
                    {"name": "tmp", "mountPath": "/tmp"},  # noqa: S108 (the pod's own emptyDir)
                    *([{"name": "tls", "mountPath": TLS_DIR, "readOnly": True}] if tls else []),
                ],
            }
        ],
        "volumes": [
            {"name": "config", "configMap": {"name": GATEWAY_APP}},
            # Mounted whole (not subPath): the kubelet swaps in a changed key set live.
            {"name": "keys", "secret": {"secretName": f"{GATEWAY_APP}-keys"}},
            {"name": "tmp", "emptyDir": {"sizeLimit": "256Mi"}},
            *(
                [{"name": "tls", "secret": {"secretName": args.tls.secret}}]
                if tls and args.tls is not None
                else []
            ),
        ],
        "topologySpreadConstraints": [
            {
                "maxSkew": 1,
                "topologyKey": "kubernetes.io/hostname",
                "whenUnsatisfiable": "ScheduleAnyway",
                "labelSelector": {"matchLabels": {"app.kubernetes.io/name": GATEWAY_APP}},
            }
        ],
    }


def redis_pod_spec(args: GatewayArgs) -> dict[str, Any]:
    """Redis's PodSpec: its config (with the password) from a Secret file, data on an emptyDir,
    a TCP probe (a PING would need the password)."""
    tcp = {"tcpSocket": {"port": "redis"}, "periodSeconds": 10, "timeoutSeconds": 3}
    return {
        "securityContext": pod_security_context(),
        "automountServiceAccountToken": False,
        "containers": [
            {
                "name": "redis",
                "image": args.redis_image,
                "args": ["/etc/redis/redis.conf"],
                "ports": [{"name": "redis", "containerPort": REDIS_PORT}],
                "readinessProbe": tcp,
                "livenessProbe": tcp | {"failureThreshold": 6},
                "resources": _resources(0.25, 256),
                "securityContext": container_security_context(),
                "volumeMounts": [
                    {"name": "config", "mountPath": "/etc/redis", "readOnly": True},
                    {"name": "data", "mountPath": "/data"},
                ],
            }
        ],
        "volumes": [
            {"name": "config", "secret": {"secretName": f"{REDIS_APP}-config"}},
            {"name": "data", "emptyDir": {"sizeLimit": "256Mi"}},
        ],
    }


def gateway_network_policy(args: GatewayArgs) -> dict[str, Any]:
    """Ingress: the OpenAI port from anywhere (it is the entry; the load balancer's source
    ranges narrow it), the metrics port from the monitoring namespace. Egress: DNS, Redis, the
    teams' model pods on 8080, and the peers' load balancers on 443, nothing else."""

    def namespace(name: str) -> dict[str, Any]:
        return {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": name}}}

    return {
        "podSelector": {"matchLabels": {"app.kubernetes.io/name": GATEWAY_APP}},
        "policyTypes": ["Ingress", "Egress"],
        "ingress": [
            {"ports": [{"protocol": "TCP", "port": GATEWAY_PORT}]},
            {
                "from": [namespace(args.monitoring_namespace)],
                "ports": [{"protocol": "TCP", "port": METRICS_PORT}],
            },
        ],
        "egress": [
            {
                "to": [namespace("kube-system")],
                "ports": [{"protocol": "UDP", "port": 53}, {"protocol": "TCP", "port": 53}],
            },
            {
                "to": [{"podSelector": {"matchLabels": {"app.kubernetes.io/name": REDIS_APP}}}],
                "ports": [{"protocol": "TCP", "port": REDIS_PORT}],
            },
            {
                "to": [
                    namespace(team_namespace)
                    | {"podSelector": {"matchLabels": {"app.kubernetes.io/name": "llama-server"}}}
                    for team_namespace in args.team_namespaces
                ],
                "ports": [{"protocol": "TCP", "port": SERVER_PORT}],
            },
            *(
                [
                    {
                        "to": [{"ipBlock": {"cidr": peer.cidr}} for peer in args.peers],
                        "ports": [{"protocol": "TCP", "port": HTTPS_PORT}],
                    }
                ]
                if args.peers
                else []
            ),
        ],
    }
