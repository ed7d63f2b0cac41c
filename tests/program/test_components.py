"""InferenceService and Tenant on their own, under Pulumi's mock monitor."""

from __future__ import annotations

from typing import Any

import pulumi
import pulumi_kubernetes as k8s
from pulumi.runtime.rpc import is_rpc_secret

from components.autoscaling import ScalingRange
from components.inference_pod import PodInputs, StoreRef
from components.inference_service import InferenceService, InferenceServiceArgs
from components.server_args import ServerOptions
from components.sizing import GgufFacts, ServingShape
from components.tenant import Tenant, TenantArgs, TenantQuota
from infra.mock_run import Declared, run_program

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
            store=StoreRef("models", "gguf", "eu-west-1"),
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
        store_port=443,
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
    store = policy["egress"][1]
    assert store["ports"] == [{"protocol": "TCP", "port": 443}]
    assert store["to"][0]["ipBlock"]["except"] == ["169.254.169.254/32"]


def test_deployment_replicas_are_left_to_the_autoscaler() -> None:
    declared = declare(service_args())
    (deployment,) = [d for d in declared if d.type == "kubernetes:apps/v1:Deployment"]
    assert deployment.inputs["spec"]["replicas"] == 1


def declare_tenant(keys: int = 2, clusters: tuple[str, ...] = ("onprem",)) -> list[Declared]:
    def program() -> None:
        providers = {name: k8s.Provider(name) for name in clusters}
        quota = TenantQuota(12.5, 48, 2, 10)
        tenant = Tenant("t", TenantArgs("search", "llamafleet-search", quota, keys, providers))
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


def test_tenant_issues_random_keys_only_as_secrets() -> None:
    declared = declare_tenant(keys=3)
    passwords = [d for d in declared if d.type == "random:index/randomPassword:RandomPassword"]
    assert len(passwords) == 3 + 1  # team keys and the scraper's
    assert all(p.inputs["length"] == 48 and p.inputs["special"] is False for p in passwords)
    secrets = [d for d in declared if d.type == "kubernetes:core/v1:Secret"]
    assert {d.inputs["metadata"]["name"] for d in secrets} == {
        "llamafleet-api-keys",
        "llamafleet-metrics-key",
    }
    for secret in secrets:
        data = secret.inputs["stringData"]
        assert is_rpc_secret(data) or all(is_rpc_secret(v) for v in data.values())


def test_a_team_in_two_clusters_gets_one_set_of_keys_in_both() -> None:
    declared = declare_tenant(keys=2, clusters=("onprem", "eks"))
    passwords = [d for d in declared if d.type == "random:index/randomPassword:RandomPassword"]
    assert len(passwords) == 2 + 1
    namespaces = [d for d in declared if d.type == "kubernetes:core/v1:Namespace"]
    assert sorted(d.name for d in namespaces) == ["t-eks-namespace", "t-onprem-namespace"]
    key_secrets = [
        d for d in declared if d.inputs.get("metadata", {}).get("name") == "llamafleet-api-keys"
    ]
    assert sorted(d.name for d in key_secrets) == ["t-eks-api-keys", "t-onprem-api-keys"]
    for secret in key_secrets:
        cluster = secret.name.split("-")[1]
        assert secret.provider.split("::")[-2] == cluster  # the provider's name in its URN
