"""Composition only: settings in, components wired together. No resource details here."""

from __future__ import annotations

import pulumi
import pulumi_kubernetes as k8s

from components.autoscaling import ScalingRange
from components.inference_pod import PodInputs, StoreRef
from components.inference_service import InferenceService, InferenceServiceArgs
from components.server_args import ServerOptions
from components.tenant import Tenant, TenantArgs, TenantQuota
from infra.config import SettingsError, pulumi_settings
from infra.placement import Placement, gguf_facts, placements, serving_shape
from infra.schema import Cluster, Settings


def main() -> None:
    try:
        settings = pulumi_settings()
    except SettingsError as exc:
        # RunError: the engine prints the message alone, without a Python traceback.
        raise pulumi.RunError(str(exc)) from None
    build(settings)


def team_namespace(team: str) -> str:
    return f"llamafleet-{team}"


def build(settings: Settings) -> None:
    placed = list(placements(settings))
    providers = {
        name: _provider(name, cluster)
        for name, cluster in settings.clusters.items()
        if any(p.cluster_name == name for p in placed)
    }
    tenants = {
        team: _tenant(settings, team, {p.cluster_name for p in placed if p.team == team}, providers)
        for team in dict.fromkeys(p.team for p in placed)
    }
    urls: dict[str, dict[str, pulumi.Output[str]]] = {}
    for placement in placed:
        cluster = settings.clusters[placement.cluster_name]
        tenant = tenants[placement.team]
        service = InferenceService(
            f"{placement.cluster_name}-{placement.team}-{placement.name}",
            _service_args(settings, placement, cluster),
            opts=pulumi.ResourceOptions(
                provider=providers[placement.cluster_name],
                depends_on=[tenant.namespaces[placement.cluster_name]],
            ),
        )
        urls.setdefault(placement.team, {})[placement.name] = service.url
    for team, tenant in tenants.items():
        pulumi.export(f"{team}-api-keys", tenant.api_keys)
    pulumi.export("endpoints", urls)


def _provider(name: str, cluster: Cluster) -> k8s.Provider:
    return k8s.Provider(
        f"{name}-k8s",
        kubeconfig=cluster.kubeconfig.path,
        context=cluster.kubeconfig.context,
        enable_server_side_apply=True,
    )


def _tenant(
    settings: Settings, team: str, clusters: set[str], providers: dict[str, k8s.Provider]
) -> Tenant:
    tenant = settings.tenants[team]
    quota = tenant.quota
    return Tenant(
        team,
        TenantArgs(
            team=team,
            namespace=team_namespace(team),
            quota=TenantQuota(
                cpus=quota.cpus, memory_gib=quota.memory_gib, gpus=quota.gpus, pods=quota.pods
            ),
            api_keys=tenant.api_keys,
            clusters={name: providers[name] for name in sorted(clusters)},
        ),
    )


def _service_args(
    settings: Settings, placement: Placement, cluster: Cluster
) -> InferenceServiceArgs:
    model = placement.model
    store = settings.model_store
    images = settings.images
    gpu = placement.tier.kind == "gpu"
    image = images.cuda if gpu and images.cuda else images.cpu
    server = ServerOptions(
        alias=placement.model_name,
        digest=model.digest,
        shape=serving_shape(model, placement.tier.kind),
        tier_kind="gpu" if gpu else "cpu",
        request_timeout_seconds=settings.serving.request_timeout_seconds,
        load_mode=model.load_mode,
        chat_template=model.chat_template,
    )
    pod = PodInputs(
        server=server,
        facts=gguf_facts(model),
        tier_name=placement.tier_name,
        image=image,
        fetcher_image=images.fetcher,
        store=StoreRef(
            bucket=store.bucket,
            prefix=store.prefix,
            region=store.region,
            endpoint_url=store.endpoint_url,
            credentials_secret=store.credentials_secret,
        ),
        api_key_secret=Tenant.api_key_secret_name,
        service_account=placement.name,
        deregistration_seconds=settings.serving.deregistration_seconds,
    )
    return InferenceServiceArgs(
        namespace=team_namespace(placement.team),
        instance=placement.name,
        model_name=placement.model_name,
        pod=pod,
        scaling=ScalingRange(
            min_replicas=model.replicas.min,
            max_replicas=model.replicas.max,
            queue_per_replica=model.queue_per_replica,
        ),
        autoscaler=cluster.autoscaler,
        prometheus_url=cluster.prometheus_url,
        service_monitor=cluster.service_monitors,
        metrics_key_secret=Tenant.metrics_key_secret_name,
        gateway_namespace=settings.serving.gateway_namespace,
        monitoring_namespace=cluster.monitoring_namespace,
        store_port=store.endpoint_port,
    )
