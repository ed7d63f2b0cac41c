"""Composition only: settings in, components wired together. No resource details here."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace

import pulumi
import pulumi_kubernetes as k8s

from llamafleet.components.alert_routing import routes_by_severity
from llamafleet.components.api_keys import ApiKey
from llamafleet.components.autoscaling import Demand, ScalingRange
from llamafleet.components.gateway import Gateway, GatewayArgs, Peer, key_mark
from llamafleet.components.gateway_config import Backend, TeamLimits
from llamafleet.components.inference_pod import PodInputs
from llamafleet.components.inference_service import InferenceService, InferenceServiceArgs
from llamafleet.components.labels import IRSA_ROLE_ANNOTATION
from llamafleet.components.model_sources import PartSources
from llamafleet.components.model_store import ModelStore
from llamafleet.components.model_sync import ModelSync, ModelSyncArgs
from llamafleet.components.monitoring import FleetMonitoring, FleetMonitoringArgs
from llamafleet.components.server_args import SERVER_PORT, ServerOptions
from llamafleet.components.tenant import StoreCredentials, Tenant, TenantArgs
from llamafleet.modelsync.sources import adapter_member, member_name, projector_member
from llamafleet.program.alerting import cluster_rules
from llamafleet.program.clusters import ProvisionedCluster, provision
from llamafleet.program.dashboards import stack_dashboards
from llamafleet.program.images import ImageRefs, image_refs
from llamafleet.settings.load import SettingsError, pulumi_settings, settings_source
from llamafleet.settings.names import former_names, team_namespace
from llamafleet.settings.placement import Placement, gguf_facts, placements, serving_shape
from llamafleet.settings.schema import (
    Cluster,
    Model,
    ModelStoreSettings,
    Serving,
    Settings,
    TenantSettings,
)


def main() -> None:
    """The Pulumi program (`pulumi up`, or inline from llamafleet.command.engine): this stack's
    settings, built.

    Raises:
        RunError: the settings are invalid; Pulumi prints a RunError's message alone, without a
            traceback (one line per problem, naming the stack file and key path).
    """
    try:
        settings = pulumi_settings()
    except SettingsError as exc:
        # RunError: the engine prints the message alone, without a Python traceback.
        raise pulumi.RunError(str(exc)) from None
    build(settings)


def build(settings: Settings) -> None:
    """The composition root: declare the fleet for validated `settings`.

    Wires the model store (and the sync of models that name a `source`), the images, each cluster
    that serves a placement, one Tenant per team and one InferenceService per placement. Exports
    `<team>-api-keys` (secret: key name -> key), `endpoints` (team -> instance -> in-cluster
    URL), `modelStore` ({url, readPolicyArn}) and, with a sync, `modelDigests` (model -> digest).
    """
    placed = list(placements(settings))
    store = _model_store(settings.model_store)
    sync = _model_sync(settings.models, settings.model_store, store)
    read_policy = _read_policy_arn(settings.model_store, store)
    images = image_refs(settings.images, needs_cuda=any(p.tier.kind == "gpu" for p in placed))
    clusters = {
        name: provision(name, cluster, settings.model_store, read_policy)
        for name, cluster in settings.clusters.items()
        if any(p.cluster_name == name for p in placed)
    }
    providers = {name: provisioned.provider for name, provisioned in clusters.items()}
    store_credentials = _store_credentials(settings.model_store)
    tenants = {
        team: _tenant(
            settings.tenants[team],
            team,
            {p.cluster_name for p in placed if p.team == team},
            providers,
            store_credentials,
        )
        for team in dict.fromkeys(p.team for p in placed)
    }
    # Pods roll only once their model is in the store, as the stack file pins it.
    models_ready: list[pulumi.Input[pulumi.Resource]] = [store]
    if sync is not None:
        models_ready.append(_pins_checked(settings.models, sync))
    urls: dict[str, dict[str, pulumi.Output[str]]] = {}
    services: list[InferenceService] = []
    for placement in placed:
        cluster = clusters[placement.cluster_name]
        tenant = settings.tenants[placement.team]
        service = InferenceService(
            f"{placement.cluster_name}-{placement.team}-{placement.name}",
            _service_args(
                Sections(settings.serving, settings.model_store, tenant),
                placement,
                cluster,
                read_policy,
                images,
                # The pods roll when the keys they accept change (a rotation's first step).
                internal_key_mark=key_mark(tenants[placement.team].accepted_keys),
            ),
            opts=pulumi.ResourceOptions(
                # Children are named after the component, so they inherit these aliases.
                aliases=[
                    pulumi.Alias(name=name) for name in _former_service_names(tenant, placement)
                ],
                provider=cluster.provider,
                depends_on=[
                    # The namespace and every Secret the pods mount.
                    tenants[placement.team],
                    *cluster.depends_on,
                    *models_ready,
                ],
            ),
        )
        urls.setdefault(placement.team, {})[placement.name] = service.url
        services.append(service)
    # With two or more clusters, each gateway reaches the others' tiers through their gateways.
    peer_keys = (
        {name: ApiKey(f"{name}-gateway-peer-key", "peer") for name in clusters}
        if len(clusters) > 1
        else {}
    )
    gateways = {
        name: _gateway(
            settings,
            cluster,
            images,
            placed=placed,
            tenants=tenants,
            services=services,
            peer_keys=peer_keys,
        )
        for name, cluster in clusters.items()
    }
    for name, cluster in clusters.items():
        _monitoring(settings, cluster, depends_on=[gateways[name]])
    for team, tenant in tenants.items():
        pulumi.export(f"{team}-api-keys", tenant.api_keys)
    pulumi.export("endpoints", urls)
    # The stack's one endpoint: the first cluster's gateway (settings order: on-prem first).
    pulumi.export("endpoint", next(iter(gateways.values())).endpoint)
    pulumi.export("gateways", {name: gateway.url for name, gateway in gateways.items()})
    # Where clients outside the clusters reach each gateway (its load balancer, once it has one).
    pulumi.export("gatewayAddresses", {name: gateway.address for name, gateway in gateways.items()})
    pulumi.export("modelStore", {"url": store.store_url, "readPolicyArn": store.read_policy_arn})
    if sync is not None:
        pulumi.export("modelDigests", sync.digests)


def _gateway(
    settings: Settings,
    cluster: ProvisionedCluster,
    images: ImageRefs,
    *,
    placed: list[Placement],
    tenants: Mapping[str, Tenant],
    services: list[InferenceService],
    peer_keys: Mapping[str, ApiKey],
) -> Gateway:
    """The gateway of one cluster: every team's models in tier order, the deployments placed
    there directly, the other clusters' through their gateways (`peer_keys`: each serving
    cluster's, empty for a single cluster)."""
    cluster_name = cluster.name
    here = [p for p in placed if p.cluster_name == cluster_name]
    teams = sorted({p.team for p in here})
    callers = sorted({p.team for p in placed})
    lb = cluster.settings.load_balancer
    peers = {
        other: Peer(
            other,
            key.value,
            _peer_cidr(settings.clusters[other]),
            _private_ca(settings.clusters[other]),
        )
        for other, key in peer_keys.items()
        if other != cluster_name
    }
    return Gateway(
        f"{cluster_name}-gateway",
        GatewayArgs(
            namespace=settings.serving.gateway_namespace,
            config=settings.serving.gateway,
            image=images.gateway,
            redis_image=images.redis,
            backends=[
                _backend(p, settings.serving)
                if p.cluster_name == cluster_name
                else _peer_backend(p, settings.clusters[p.cluster_name], settings.serving)
                for p in placed
            ],
            limits={
                team: TeamLimits(
                    settings.tenants[team].limits.requests_per_minute,
                    settings.tenants[team].limits.tokens_per_minute,
                )
                for team in callers
            },
            team_keys={
                team: tenants[team].api_keys.apply(lambda keys: list(keys.values()))
                for team in callers
            },
            internal_keys={team: tenants[team].internal_key for team in teams},
            team_namespaces=[team_namespace(team) for team in teams],
            monitoring_namespace=cluster.settings.monitoring_namespace,
            request_timeout_seconds=settings.serving.request_timeout_seconds,
            exposure=None
            if lb.type == "ClusterIP"
            else cluster.load_balancing(settings.serving.deregistration_seconds),
            tls=lb.tls,
            service_monitor=cluster.settings.service_monitors,
            hostname=lb.hostname,
            peer_key=peer_keys[cluster_name].value if peer_keys else None,
            peers=list(peers.values()),
        ),
        opts=pulumi.ResourceOptions(
            provider=cluster.provider, depends_on=[*cluster.depends_on, *services]
        ),
    )


def _monitoring(
    settings: Settings,
    cluster: ProvisionedCluster,
    depends_on: list[pulumi.Resource],
) -> FleetMonitoring:
    """The alerts of one cluster (llamafleet.program.alerting.cluster_rules), in the form its
    Prometheus loads: a PrometheusRule where ServiceMonitors are, else a ConfigMap; and the
    fleet's dashboards (llamafleet.program.dashboards), a ConfigMap each. `depends_on`: what
    must exist first (the gateway)."""
    alerting = settings.alerting
    return FleetMonitoring(
        f"{cluster.name}-monitoring",
        FleetMonitoringArgs(
            namespace=cluster.settings.monitoring_namespace,
            rules=cluster_rules(settings, cluster.name),
            operator=cluster.settings.service_monitors,
            receivers=dict(alerting.receivers),
            severities=routes_by_severity(alerting.receivers, alerting.routes.given()),
            create_namespace=cluster.settings.create_monitoring_namespace,
            dashboards=stack_dashboards(),
        ),
        opts=pulumi.ResourceOptions(
            provider=cluster.provider, depends_on=[*cluster.depends_on, *depends_on]
        ),
    )


def _backend(placement: Placement, serving: Serving | None = None) -> Backend:
    """One placement as the gateway reaches it: its Service (InferenceService.url), the
    requests its tier serves at once at its most replicas, and how long a request waits for it
    to wake where it may be at zero replicas (`serving.wakeSeconds`; none without `serving`:
    another cluster's gateway holds its own)."""
    model = placement.model
    return Backend(
        team=placement.team,
        model=placement.model_name,
        tier=placement.tier_name,
        base_url=(
            f"http://{placement.name}.{team_namespace(placement.team)}.svc.cluster.local:"
            f"{SERVER_PORT}/v1"
        ),
        capacity=model.replicas.max * model.parallel,
        max_tokens=model.max_tokens,
        embeddings=model.embeddings is not None,
        wake_seconds=serving.wake_seconds if serving and model.replicas.min == 0 else 0,
    )


def _peer_backend(placement: Placement, cluster: Cluster, serving: Serving) -> Backend:
    """One placement of another cluster, as a gateway reaches it: through the gateway of
    `cluster`, which serves it (by its load balancer's hostname, which the rules require), and
    which may hold the request while the tier wakes (its wake_seconds)."""
    local = _backend(placement, serving)
    return replace(
        local, base_url=f"https://{cluster.load_balancer.hostname}/v1", peer=placement.cluster_name
    )


def _peer_cidr(cluster: Cluster) -> str:
    """Where a cluster's gateway load balancer has its addresses: its EKS VPC, or on-prem its
    fixed address (the rules require one where other clusters route to it)."""
    if cluster.eks is not None:
        return cluster.eks.vpc_cidr
    return f"{cluster.load_balancer.address}/32"


def _private_ca(cluster: Cluster) -> str | None:
    tls = cluster.load_balancer.tls
    return None if tls is None else tls.ca_certificate


def _model_store(store_settings: ModelStoreSettings) -> ModelStore:
    # The settings section is the component's config, plus what only the pods need.
    return ModelStore("model-store", store_settings)


def _read_policy_arn(
    store_settings: ModelStoreSettings, store: ModelStore
) -> pulumi.Output[str] | None:
    """The store's read-only IAM policy; None for an on-prem store (pods use its credentials)."""
    if store_settings.endpoint_url is not None:
        return None
    return store.read_policy_arn.apply(lambda arn: arn or "")


def _model_sync(
    models: Mapping[str, Model], store: ModelStoreSettings, model_store: ModelStore
) -> ModelSync | None:
    """Sync the models that name a `source` (a file or an Ollama model); None when none does."""
    sources = {name: model.source for name, model in models.items() if model.source is not None}
    if not sources:
        return None
    sync = ModelSync(
        "models",
        ModelSyncArgs(
            # A plain string (the bucket is named by settings): no unknowns in a first preview.
            store_url=store.location.url,
            models=sources,
            endpoint_url=store.endpoint_url,
            region=None if store.endpoint_url else store.region,
            checksum_headers=store.checksum_headers,
            parts={
                name: PartSources(
                    tuple(adapter.source for adapter in model.adapters if adapter.source),
                    model.projector.source if model.projector is not None else None,
                )
                for name, model in models.items()
                if model.source is not None and (model.adapters or model.projector)
            },
        ),
        # Into the bucket once it exists.
        opts=pulumi.ResourceOptions(depends_on=[model_store]),
    )
    return sync


def _pins_checked(models: Mapping[str, Model], sync: ModelSync) -> pulumi.Output[ModelSync]:
    """`sync`, once every digest it synced matches the stack file's pin. Deployments wait on
    it: a sync of other bytes fails it, so the update stops and no pod changes."""
    pins = {
        key: digest
        for name, model in models.items()
        if model.source
        for key, digest in model_pins(name, model).items()
    }
    return sync.digests.apply(lambda synced: check_pins(pins, synced, sync))


def model_pins(name: str, model: Model) -> dict[str, Pin]:
    """What the stack file pins for model `name`, keyed as ModelSync's `digests` output keys
    the synced files: `name`, `name#K` for shard K of a split model, `name#adapterK` and
    `name#projector`."""
    pins = {name: Pin(f"models.{name}.digest", model.digest)}
    for index, shard in enumerate(model.shards):
        key = member_name(name, index + 1)
        pins[key] = Pin(f"models.{name}.shards[{index}].digest", shard.digest)
    for index, adapter in enumerate(model.adapters):
        key = adapter_member(name, index)
        pins[key] = Pin(f"models.{name}.adapters[{index}].digest", adapter.digest)
    if model.projector is not None:
        key = projector_member(name)
        pins[key] = Pin(f"models.{name}.projector.digest", model.projector.digest)
    return pins


@dataclass(frozen=True)
class Pin:
    """A digest the stack file pins, and the key path that pins it (`models.m.digest`)."""

    key_path: str
    digest: str


def check_pins(pins: dict[str, Pin], synced: dict[str, str], sync: ModelSync) -> ModelSync:
    """Pods serve the digest the stack file pins: a sync of other bytes stops the update.
    Returns `sync`; raises RunError with one line per model that differs.

    Raises:
        RunError: a synced digest differs from its pin; one line per file, naming the stack
            file and `llamafleet:models.<name>.digest` (`…shards[K].digest` for a shard).
    """
    wrong = [
        f"{settings_source()}: llamafleet:{pin.key_path}: the stack pins {pin.digest} but its "
        f"source synced {synced[name]}; serve those bytes by updating the pin (`llamafleet "
        "models inspect --digest`), or restore the file"
        for name, pin in sorted(pins.items())
        if name in synced and synced[name] != pin.digest
    ]
    if wrong:
        raise pulumi.RunError("\n".join(wrong))
    return sync


def _former_service_names(tenant: TenantSettings, placement: Placement) -> list[str]:
    """What an InferenceService was called before its team, model or tier was renamed."""
    return former_names(
        (placement.cluster_name, None),
        (placement.team, tenant.former_name),
        (placement.model_name, placement.model.former_name),
        (placement.tier_name, placement.tier.former_name),
    )


def _store_credentials(store: ModelStoreSettings) -> StoreCredentials | None:
    """The fetchers' shared credentials file, as a secret, where the store is read with a key
    pair (on-prem); None where pods use an IAM role."""
    if store.credentials_secret is None or store.credentials is None:
        return None
    pair = store.credentials
    secret_key = pair.secret_access_key.get_secret_value()
    return StoreCredentials(
        secret_name=store.credentials_secret,
        file=pulumi.Output.secret(
            "[default]\n"
            f"aws_access_key_id = {pair.access_key_id}\n"
            f"aws_secret_access_key = {secret_key}\n"
        ),
    )


def _tenant(
    tenant: TenantSettings,
    team: str,
    clusters: set[str],
    providers: dict[str, k8s.Provider],
    store_credentials: StoreCredentials | None,
) -> Tenant:
    former = tenant.former_name
    return Tenant(
        team,
        # The team's keys are named after it, so they inherit the alias and survive a rename.
        opts=pulumi.ResourceOptions(aliases=[pulumi.Alias(name=former)] if former else None),
        args=TenantArgs(
            team=team,
            namespace=team_namespace(team),
            # The settings entry is the component's config (plus the team's models).
            config=tenant,
            clusters={name: providers[name] for name in sorted(clusters)},
            store_credentials=store_credentials,
        ),
    )


@dataclass(frozen=True)
class Sections:
    """The settings sections an InferenceService is made from, besides its placement: the
    fleet's serving defaults, the model store, and the team's entry."""

    serving: Serving
    store: ModelStoreSettings
    tenant: TenantSettings


def _service_args(
    sections: Sections,
    placement: Placement,
    cluster: ProvisionedCluster,
    read_policy: pulumi.Output[str] | None,
    images: ImageRefs,
    *,
    internal_key_mark: pulumi.Output[str],
) -> InferenceServiceArgs:
    """One placement's InferenceService: its pods, its scaling, and what the cluster adds."""
    model = placement.model
    role = _fetcher_role(sections, placement, cluster, read_policy)
    return InferenceServiceArgs(
        namespace=team_namespace(placement.team),
        instance=placement.name,
        model_name=placement.model_name,
        pod=_pod_inputs(sections, placement, images),
        scaling=ScalingRange(
            min_replicas=model.replicas.min,
            max_replicas=model.replicas.max,
            queue_per_replica=model.queue_per_replica,
        ),
        autoscaler=cluster.settings.autoscaler,
        prometheus_url=cluster.settings.prometheus_url,
        service_monitor=cluster.settings.service_monitors,
        metrics_key_secret=Tenant.metrics_key_secret_name,
        gateway_namespace=sections.serving.gateway_namespace,
        monitoring_namespace=cluster.settings.monitoring_namespace,
        service_account_annotations={IRSA_ROLE_ANNOTATION: role} if role is not None else {},
        internal_key_mark=internal_key_mark,
        demand=Demand(
            team=placement.team,
            model=placement.model_name,
            tier=placement.tier_name,
            per_replica=model.parallel + model.queue_per_replica,
        ),
        reclaimable=placement.tier.capacity_type == "spot",
    )


def _server_options(serving: Serving, placement: Placement) -> ServerOptions:
    """llama-server's options for one placement (its argv, serving shape and tier kind)."""
    model = placement.model
    return ServerOptions(
        alias=placement.model_name,
        digest=model.digest,
        shard_digests=tuple(shard.digest for shard in model.shards),
        adapters=tuple((adapter.digest, adapter.scale) for adapter in model.adapters),
        projector_digest=model.projector.digest if model.projector is not None else None,
        shape=serving_shape(model, placement.tier.kind),
        tier_kind="gpu" if placement.tier.kind == "gpu" else "cpu",
        request_timeout_seconds=serving.request_timeout_seconds,
        load_mode=model.load_mode,
        chat_template=model.chat_template,
        sampling=model.sampling,
        max_tokens=model.max_tokens,
        embeddings=model.embeddings,
    )


def _pod_inputs(sections: Sections, placement: Placement, images: ImageRefs) -> PodInputs:
    """What one placement's pod template is made from: the server, the image for its tier
    (the CUDA one on gpu tiers), and the store its init container fetches from."""
    gpu = placement.tier.kind == "gpu"
    return PodInputs(
        server=_server_options(sections.serving, placement),
        facts=gguf_facts(placement.model),
        tier_name=placement.tier_name,
        image=images.cuda if gpu and images.cuda is not None else images.cpu,
        fetcher_image=images.fetcher,
        store=sections.store,
        store_credentials_secret=sections.store.credentials_secret,
        api_key_secret=Tenant.api_key_secret_name,
        service_account=placement.name,
        deregistration_seconds=sections.serving.deregistration_seconds,
        tokens_per_second=placement.model.tokens_per_second,
        queue_per_replica=placement.model.queue_per_replica,
    )


def _fetcher_role(
    sections: Sections,
    placement: Placement,
    cluster: ProvisionedCluster,
    read_policy: pulumi.Output[str] | None,
) -> pulumi.Output[str] | None:
    """EKS with an AWS store: the ARN of the role the placement's fetcher reads the store
    with, which only its ServiceAccount can assume (pods cannot reach the node's credentials:
    IMDSv2 hop limit 1 and the NetworkPolicy). None where the store is read with a key pair."""
    if sections.store.credentials_secret is not None or read_policy is None:
        return None
    return cluster.pod_role(
        placement.team,
        placement.name,
        team_namespace(placement.team),
        read_policy,
        _former_service_names(sections.tenant, placement),
    )
