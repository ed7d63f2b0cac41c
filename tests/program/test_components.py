"""InferenceService and Tenant on their own, under Pulumi's mock monitor."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pulumi
import pulumi_kubernetes as k8s
import pytest
from pulumi.runtime.rpc import is_rpc_secret
from pydantic import ValidationError

from llamafleet.command.mock_run import API_KEY_TYPE, Declared, run_program
from llamafleet.components.autoscaling import ScalingRange
from llamafleet.components.disruption import disruption_budget
from llamafleet.components.inference_pod import PodInputs
from llamafleet.components.inference_service import InferenceService, InferenceServiceArgs
from llamafleet.components.model_store import ModelStoreConfig
from llamafleet.components.server_args import ServerOptions
from llamafleet.components.sizing import GgufFacts, ServingShape
from llamafleet.components.tenant import (
    StoreCredentials,
    Tenant,
    TenantArgs,
    TenantConfig,
    TenantQuota,
)

FACTS = GgufFacts(4_920_739_232, 32, 8, 128, 128, 131072, 128_256)
DIGEST = "sha256:" + "cd" * 32


def service_args(
    tier_kind: str = "gpu", autoscaler: str = "keda", monitor: bool = True
) -> InferenceServiceArgs:
    shape = ServingShape(8192, 4, 4, 1024, gpus=1 if tier_kind == "gpu" else 0)
    return InferenceServiceArgs(
        namespace="llamafleet-search",
        instance="llama31-8b-gpu-l4",
        model_name="llama31-8b",
        pod=PodInputs(
            server=ServerOptions("llama31-8b", DIGEST, shape, tier_kind, 300),  # type: ignore[arg-type]
            facts=FACTS,
            tier_name="gpu-l4",
            image="registry/llama-server-cuda@sha256:" + "0" * 64,
            fetcher_image="registry/model-fetcher@sha256:" + "1" * 64,
            store=ModelStoreConfig(bucket="models", prefix="gguf", region="eu-west-1"),
            api_key_secret="llamafleet-api-keys",
            service_account="llama31-8b-gpu-l4",
            deregistration_seconds=30,
        ),
        scaling=ScalingRange(1, 4, 3),
        autoscaler=autoscaler,  # type: ignore[arg-type]
        prometheus_url="http://prometheus:9090",
        service_monitor=monitor,
        metrics_key_secret="llamafleet-metrics-key",
        gateway_namespace="llamafleet-gateway",
        monitoring_namespace="monitoring",
    )


def declare(args: InferenceServiceArgs) -> list[Declared]:
    return run_program(lambda: _declare(args), "test", {})


def _declare(args: InferenceServiceArgs) -> None:
    InferenceService("svc", args)


def kinds(declared: list[Declared]) -> dict[str, dict[str, Any]]:
    return {d.inputs["kind"]: d.redacted_inputs for d in declared if "kind" in d.inputs}


def test_gpu_service_declares_every_object_under_the_component() -> None:
    declared = declare(service_args())
    (component,) = [d for d in declared if d.type == "llamafleet:serving:InferenceService"]
    children = [d for d in declared if d.parent == component.urn]
    assert {d.inputs["kind"] for d in children} == {
        "ServiceAccount",
        "Deployment",
        "Service",
        "PodDisruptionBudget",
        "NetworkPolicy",
        "ScaledObject",
        "ServiceMonitor",
        "PodMonitor",
    }
    assert all(d.name.startswith("svc-") for d in children)
    objects = kinds(declared)
    pod = objects["Deployment"]["spec"]["template"]["spec"]
    assert pod["containers"][0]["resources"]["limits"]["nvidia.com/gpu"] == "1"
    query = objects["ScaledObject"]["spec"]["triggers"][0]["metadata"]["query"]
    assert query == (
        'sum(llamacpp:requests_deferred{namespace="llamafleet-search",service="llama31-8b-gpu-l4"})'
    )
    assert objects["ScaledObject"]["spec"]["triggers"][0]["metadata"]["threshold"] == "3"
    endpoint = objects["ServiceMonitor"]["spec"]["endpoints"][0]
    assert endpoint["authorization"]["credentials"] == {
        "name": "llamafleet-metrics-key",
        "key": "key",
    }


def test_cpu_service_without_keda_or_prometheus_operator_falls_back_to_hpa() -> None:
    objects = kinds(declare(service_args("cpu", "hpa", monitor=False)))
    assert "ScaledObject" not in objects and "ServiceMonitor" not in objects
    assert "PodMonitor" not in objects
    hpa = objects["HorizontalPodAutoscaler"]["spec"]
    assert (hpa["minReplicas"], hpa["maxReplicas"]) == (1, 4)
    assert hpa["metrics"][0]["resource"]["name"] == "cpu"
    assert (
        "nvidia.com/gpu"
        not in objects["Deployment"]["spec"]["template"]["spec"]["containers"][0]["resources"][
            "limits"
        ]
    )


def test_network_policy_admits_only_gateway_and_monitoring_and_blocks_metadata_api() -> None:
    policy = kinds(declare(service_args()))["NetworkPolicy"]["spec"]
    sources = [
        s["namespaceSelector"]["matchLabels"]["kubernetes.io/metadata.name"]
        for s in policy["ingress"][0]["from"]
    ]
    assert sources == ["llamafleet-gateway", "monitoring"]
    assert policy["ingress"][0]["ports"] == [{"protocol": "TCP", "port": 8080}]
    # The model fetcher's metrics port: the monitoring namespace only.
    fetcher = policy["ingress"][1]
    assert [s["namespaceSelector"]["matchLabels"] for s in fetcher["from"]] == [
        {"kubernetes.io/metadata.name": "monitoring"}
    ]
    assert fetcher["ports"] == [{"protocol": "TCP", "port": 9102}]
    assert len(policy["ingress"]) == 2
    store = policy["egress"][1]
    assert store["ports"] == [{"protocol": "TCP", "port": 443}]
    assert store["to"][0]["ipBlock"]["except"] == ["169.254.169.254/32"]


def test_a_new_deployment_starts_with_one_replica_and_leaves_the_rest_to_the_autoscaler() -> None:
    declared = declare(service_args())
    (deployment,) = [d for d in declared if d.type == "kubernetes:apps/v1:Deployment"]
    assert deployment.inputs["spec"]["replicas"] == 1
    assert deployment.ignore_changes == ("spec.replicas",)


@pytest.mark.parametrize(
    ("min_replicas", "budget"),
    [(0, {"minAvailable": 1}), (1, {"minAvailable": 1}), (2, {"maxUnavailable": 1})],
)
def test_a_drain_never_evicts_a_lone_replica_and_one_of_several_at_a_time(
    min_replicas: int, budget: dict[str, int]
) -> None:
    """At most one replica: evicting it is refused (a drain waits for a rollout to start its
    replacement); two or more: one at a time. A pod that is not ready never blocks a drain."""
    args = replace(service_args(), scaling=ScalingRange(min_replicas, 4, 3))
    pdb = kinds(declare(args))["PodDisruptionBudget"]["spec"]
    assert pdb == budget | {
        "selector": {
            "matchLabels": {
                "app.kubernetes.io/name": "llama-server",
                "app.kubernetes.io/instance": "llama31-8b-gpu-l4",
            }
        },
        "unhealthyPodEvictionPolicy": "AlwaysAllow",
    }
    with pytest.raises(ValueError, match="negative"):
        disruption_budget({"app": "x"}, -1)


@pytest.mark.parametrize("min_replicas", [0, 1, 2])
def test_on_spot_nodes_a_drain_is_never_refused(min_replicas: int) -> None:
    """A spot node goes 2 minutes after its notice whatever the budget says: a refused eviction
    would only kill the lone pod with its node instead of draining it through preStop."""
    args = replace(service_args(), scaling=ScalingRange(min_replicas, 4, 3), reclaimable=True)
    pdb = kinds(declare(args))["PodDisruptionBudget"]["spec"]
    assert pdb["maxUnavailable"] == 1 and "minAvailable" not in pdb


def test_the_fetcher_retries_and_a_pod_monitor_scrapes_why_while_the_pod_is_in_init() -> None:
    objects = kinds(declare(service_args()))
    (fetcher,) = objects["Deployment"]["spec"]["template"]["spec"]["initContainers"]
    command = fetcher["command"]
    assert command[command.index("--metrics-port") + 1] == "9102"
    assert command[command.index("--retry-seconds") + 1] == "300"
    assert fetcher["ports"] == [{"name": "fetch-metrics", "containerPort": 9102, "protocol": "TCP"}]
    monitor = objects["PodMonitor"]
    assert monitor["metadata"]["namespace"] == "llamafleet-search"
    assert monitor["spec"]["selector"] == {
        "matchLabels": {
            "app.kubernetes.io/name": "llama-server",
            "app.kubernetes.io/instance": "llama31-8b-gpu-l4",
        }
    }
    (endpoint,) = monitor["spec"]["podMetricsEndpoints"]
    assert (endpoint["port"], endpoint["path"]) == ("fetch-metrics", "/metrics")
    # Once the fetch is done the pod runs and the init container's port is dropped, not down.
    assert endpoint["relabelings"] == [
        {"sourceLabels": ["__meta_kubernetes_pod_phase"], "regex": "Pending", "action": "keep"}
    ]


def declare_tenant(
    keys: tuple[str, ...] = ("2026-11", "2026-12"),
    clusters: tuple[str, ...] = ("onprem",),
    store_file: str | None = None,
) -> list[Declared]:
    def program() -> None:
        providers = {name: k8s.Provider(name) for name in clusters}
        quota = TenantQuota(cpus=12.5, memory_gib=48, gpus=2, pods=10)
        store = None
        if store_file is not None:
            store = StoreCredentials("model-store-credentials", pulumi.Output.secret(store_file))
        config = TenantConfig(quota=quota, api_keys=keys)
        args = TenantArgs("search", "llamafleet-search", config, providers, store)
        tenant = Tenant("t", args)
        pulumi.export("keys", tenant.api_keys)

    return run_program(program, "test", {})


def test_tenant_quota_limit_range_and_default_deny() -> None:
    objects = kinds(declare_tenant())
    assert (
        objects["Namespace"]["metadata"]["labels"]["pod-security.kubernetes.io/enforce"]
        == "restricted"
    )
    assert objects["ResourceQuota"]["spec"]["hard"] == {
        "requests.cpu": "12.5",
        "limits.cpu": "12.5",
        "requests.memory": "49152Mi",
        "limits.memory": "49152Mi",
        "requests.nvidia.com/gpu": "2",
        "pods": "10",
    }
    assert objects["LimitRange"]["spec"]["limits"][0]["default"] == {
        "cpu": "500m",
        "memory": "512Mi",
    }
    assert objects["NetworkPolicy"]["spec"] == {
        "podSelector": {},
        "policyTypes": ["Ingress", "Egress"],
    }


def test_tenant_issues_one_key_per_name_only_as_secrets() -> None:
    declared = declare_tenant(keys=("a", "b", "c"))
    keys = {d.name: d for d in declared if d.type == API_KEY_TYPE}
    # One resource per key name (so removing a name removes only that key), the scraper's and
    # the gateway's internal key for the team.
    assert sorted(keys) == [
        "t-api-key-a",
        "t-api-key-b",
        "t-api-key-c",
        "t-gateway-key",
        "t-metrics-key",
    ]
    assert [keys[f"t-api-key-{n}"].inputs["keyName"] for n in "abc"] == ["a", "b", "c"]
    assert all(k.inputs["length"] == 48 for k in keys.values())
    secrets = [d for d in declared if d.type == "kubernetes:core/v1:Secret"]
    assert {d.inputs["metadata"]["name"] for d in secrets} == {
        "llamafleet-api-keys",
        "llamafleet-metrics-key",
    }
    for secret in secrets:
        data = secret.inputs["stringData"]
        assert is_rpc_secret(data) or all(is_rpc_secret(v) for v in data.values())


def test_tenant_key_names_must_be_distinct_and_at_least_one() -> None:
    quota = TenantQuota(cpus=1, memory_gib=1, gpus=0, pods=1)
    with pytest.raises(ValidationError, match="key names must be distinct"):
        TenantConfig(quota=quota, api_keys=("a", "a"))
    with pytest.raises(ValidationError, match="at least 1 item"):
        TenantConfig(quota=quota, api_keys=())
    with pytest.raises(ValidationError, match="keys are named now"):
        TenantConfig(quota=quota, api_keys=2)  # type: ignore[arg-type]


def test_store_credentials_become_a_secret_in_every_namespace_of_the_team() -> None:
    file = "[default]\naws_access_key_id = a\naws_secret_access_key = b\n"
    declared = declare_tenant(clusters=("onprem", "eks"), store_file=file)
    stores = [
        d for d in declared if d.inputs.get("metadata", {}).get("name") == "model-store-credentials"
    ]
    assert sorted(d.name for d in stores) == [
        "t-eks-store-credentials",
        "t-onprem-store-credentials",
    ]
    for secret in stores:
        data = secret.inputs["stringData"]
        assert is_rpc_secret(data) or is_rpc_secret(data["credentials"])
    without = declare_tenant()
    assert not [d for d in without if d.name.endswith("-store-credentials")]


def test_a_team_in_two_clusters_gets_one_set_of_keys_in_both() -> None:
    declared = declare_tenant(clusters=("onprem", "eks"))
    passwords = [d for d in declared if d.type == API_KEY_TYPE]
    assert len(passwords) == 2 + 2
    namespaces = [d for d in declared if d.type == "kubernetes:core/v1:Namespace"]
    assert sorted(d.name for d in namespaces) == ["t-eks-namespace", "t-onprem-namespace"]
    key_secrets = [
        d for d in declared if d.inputs.get("metadata", {}).get("name") == "llamafleet-api-keys"
    ]
    assert sorted(d.name for d in key_secrets) == ["t-eks-api-keys", "t-onprem-api-keys"]
    for secret in key_secrets:
        cluster = secret.name.split("-")[1]
        assert secret.provider.split("::")[-2] == cluster  # the provider's name in its URN
