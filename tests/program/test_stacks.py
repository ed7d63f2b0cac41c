"""Every stack file, run through the real program under Pulumi's mock monitor."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any

import pulumi
import pytest
import yaml
from pulumi.runtime.rpc import is_rpc_secret
from support.stack_renders import model_objects, rendered_stack

from llamafleet.command.mock_run import API_KEY_TYPE
from llamafleet.command.render import Rendered, render, write
from llamafleet.components.inference_pod import DRAIN_COMMAND, PROMPT_SECONDS
from llamafleet.components.server_args import API_KEY_FILE, SERVER_PORT
from llamafleet.policy.rules import violations
from llamafleet.program.stack import check_pins, model_pins
from llamafleet.settings.load import load_stack_file, stack_file
from llamafleet.settings.names import team_namespace
from llamafleet.settings.placement import placements
from llamafleet.settings.schema import Model

ROOT = Path(__file__).resolve().parents[2]


def objects_of(rendered: Rendered, kind: str) -> list[dict[str, Any]]:
    """The serving objects of `kind`: those of the teams' namespaces, not the gateway's."""
    return [o for o in model_objects(rendered.kubernetes_objects) if o["kind"] == kind]


def by_name(rendered: Rendered, kind: str) -> dict[tuple[str, str], dict[str, Any]]:
    return {
        (o["metadata"]["namespace"], o["metadata"]["name"]): o for o in objects_of(rendered, kind)
    }


def flag(args: list[str], name: str) -> str:
    return args[args.index(name) + 1]


def test_one_set_of_serving_objects_per_team_model_and_tier(stack: str, rendered: Rendered) -> None:
    settings = load_stack_file(stack_file(stack))
    expected = {(team_namespace(p.team), p.name) for p in placements(settings)}
    assert expected, "every stack serves something"
    for kind in ("Deployment", "Service", "PodDisruptionBudget", "ServiceAccount"):
        assert set(by_name(rendered, kind)) == expected, kind
    autoscalers = {
        *by_name(rendered, "ScaledObject"),
        *by_name(rendered, "HorizontalPodAutoscaler"),
    }
    assert autoscalers == expected
    namespaces = {o["metadata"]["name"] for o in objects_of(rendered, "Namespace")}
    made_for_monitoring = {
        c.monitoring_namespace for c in settings.clusters.values() if c.create_monitoring_namespace
    }
    assert namespaces == {team_namespace(team) for team in settings.tenants} | made_for_monitoring


def test_a_lone_replica_is_kept_through_drains_except_on_spot_nodes(
    stack: str, rendered: Rendered
) -> None:
    settings = load_stack_file(stack_file(stack))
    budgets = by_name(rendered, "PodDisruptionBudget")
    for p in placements(settings):
        spec = budgets[(team_namespace(p.team), p.name)]["spec"]
        kept = p.model.replicas.min <= 1 and p.tier.capacity_type != "spot"
        assert spec.get("minAvailable") == (1 if kept else None), p.name
        assert spec.get("maxUnavailable") == (None if kept else 1), p.name


def test_pods_are_sized_and_argued_by_the_rules(stack: str, rendered: Rendered) -> None:
    settings = load_stack_file(stack_file(stack))
    deployments = by_name(rendered, "Deployment")
    for p in placements(settings):
        pod = deployments[(team_namespace(p.team), p.name)]["spec"]["template"]["spec"]
        (server,) = pod["containers"]
        args, resources = server["args"], server["resources"]
        assert resources["limits"]["cpu"] == str(p.sizing.cpus) == flag(args, "--threads")
        assert resources["requests"] == resources["limits"]
        assert resources["limits"]["memory"] == f"{p.sizing.memory_mib}Mi"
        assert flag(args, "--ctx-size") == str(p.model.context_length * p.model.parallel)
        assert flag(args, "--parallel") == str(p.model.parallel)
        assert flag(args, "--cache-ram") == str(p.model.cache_ram_mib)
        assert pod["nodeSelector"] == {"llamafleet.io/tier": p.tier_name}
        fetch = pod["initContainers"][0]["command"]
        assert flag(fetch, "--digest") == p.model.digest
        assert flag(args, "--model").endswith(p.model.digest.split(":")[1] + ".gguf")
        if p.tier.kind == "gpu":
            assert resources["limits"]["nvidia.com/gpu"] == str(p.model.gpus)
            assert flag(args, "--n-gpu-layers") == "999"
            assert {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"} in pod[
                "tolerations"
            ]
            assert "-cuda@" in server["image"]
        else:
            assert "nvidia.com/gpu" not in resources["limits"]
            assert "--n-gpu-layers" not in args
            assert "tolerations" not in pod


def test_rollouts_never_drop_a_ready_pod(stack: str, rendered: Rendered) -> None:
    settings = load_stack_file(stack_file(stack))
    for deployment in objects_of(rendered, "Deployment"):
        spec = deployment["spec"]
        assert spec["strategy"]["rollingUpdate"] == {"maxUnavailable": 0, "maxSurge": 1}
        pod = spec["template"]["spec"]
        (server,) = pod["containers"]
        # llama-drain PORT KEY_FILE SETTLE QUIET MAX: endpoint removal, then idle, bounded.
        command, port, key_file, *seconds = server["lifecycle"]["preStop"]["exec"]["command"]
        settle, quiet, longest = (int(s) for s in seconds)
        assert (command, port, key_file) == (DRAIN_COMMAND, str(SERVER_PORT), API_KEY_FILE)
        assert flag(server["args"], "--api-key-file") == key_file
        assert settle == settings.serving.deregistration_seconds
        assert quiet > 5  # cpp-httplib's keep-alive
        assert pod["terminationGracePeriodSeconds"] > settle + longest
        # At least one whole request of the longest kind fits in the drain.
        assert longest > min(int(flag(server["args"], "--timeout")), PROMPT_SECONDS)
        for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
            assert server[probe]["httpGet"]["path"] == "/health"


def test_every_object_passes_the_policy_rules(rendered: Rendered) -> None:
    assert violations(rendered.kubernetes_objects) == []


def test_autoscaler_follows_the_queue_or_falls_back_to_cpu(stack: str, rendered: Rendered) -> None:
    settings = load_stack_file(stack_file(stack))
    keda = {c.autoscaler for c in settings.clusters.values()} == {"keda"}
    for scaled in objects_of(rendered, "ScaledObject"):
        # It adopts the HPA the `hpa` autoscaler made for the same Deployment (c17).
        annotations = scaled["metadata"]["annotations"]
        assert annotations["scaledobject.keda.sh/transfer-hpa-ownership"] == "true"
        hpa_config = scaled["spec"]["advanced"]["horizontalPodAutoscalerConfig"]
        assert hpa_config["name"] == scaled["spec"]["scaleTargetRef"]["name"]
        # The queue first; the gateway's demand second (tests/program/test_gateway_objects.py).
        trigger, _ = scaled["spec"]["triggers"]
        assert "llamacpp:requests_deferred" in trigger["metadata"]["query"]
        assert "requests_processing" not in trigger["metadata"]["query"]
    assert bool(objects_of(rendered, "ScaledObject")) == keda
    for hpa in objects_of(rendered, "HorizontalPodAutoscaler"):
        (owner,) = hpa["metadata"]["ownerReferences"]
        assert (owner["kind"], owner["name"]) == (
            "Deployment",
            hpa["spec"]["scaleTargetRef"]["name"],
        )
    assert bool(objects_of(rendered, "HorizontalPodAutoscaler")) == (not keda)


def test_every_cluster_is_reached_with_server_side_apply_and_mutable_secrets(
    rendered: Rendered,
) -> None:
    providers = [d for d in rendered.declared if d.type == "pulumi:providers:kubernetes"]
    assert providers
    for provider in providers:
        # Upserting creates (an interrupted `up` is finishable) and in-place Secret updates
        # (a key rotation never deletes the Secret pods mount).
        assert provider.inputs.get("enableServerSideApply") in (True, "true"), provider.name
        assert provider.inputs.get("enableSecretMutable") in (True, "true"), provider.name
        assert provider.inputs.get("enableConfigMapMutable") in (True, "true"), provider.name


def test_api_keys_reach_state_only_as_secrets(tmp_path: Path, rendered: Rendered) -> None:
    secrets = [d for d in rendered.declared if d.type == "kubernetes:core/v1:Secret"]
    assert secrets
    for declared in secrets:
        data = declared.inputs["stringData"]
        assert _is_secret(data) or all(_is_secret(v) for v in data.values()), declared.name
    write(rendered, tmp_path)
    dumped = "".join(p.read_text() for p in tmp_path.rglob("*") if p.is_file())
    assert "mock-" not in dumped  # the mock key values never reach the rendered files
    assert "[secret]" in dumped


def _is_secret(value: Any) -> bool:
    return bool(is_rpc_secret(value))


def test_component_children_are_parented_and_named_after_it(rendered: Rendered) -> None:
    components = {d.urn: d for d in rendered.declared if not d.custom}
    assert {d.type for d in components.values()} >= {
        "llamafleet:serving:InferenceService",
        "llamafleet:tenancy:Tenant",
    }
    children = Counter()
    for declared in rendered.declared:
        parent = components.get(declared.parent)
        if parent is not None:
            assert declared.name.startswith(f"{parent.name}-"), declared.name
            children[parent.type] += 1
    assert children["llamafleet:serving:InferenceService"] >= 6
    assert children["llamafleet:tenancy:Tenant"] >= 7


def test_render_writes_one_stable_file_per_object(tmp_path: Path) -> None:
    """Two separate renders (not the session's cached one) write the same files, byte for
    byte, so a PR diff of two renders shows only what the change does."""
    first = write(render("prod"), tmp_path / "a")
    second = write(render("prod"), tmp_path / "b")
    assert [p.relative_to(tmp_path / "a") for p in first] == [
        p.relative_to(tmp_path / "b") for p in second
    ]
    for a, b in zip(first, second, strict=True):
        assert a.read_bytes() == b.read_bytes(), a
    assert (tmp_path / "a/resources.json").read_bytes() == (
        tmp_path / "b/resources.json"
    ).read_bytes()
    assert (tmp_path / "a/llamafleet-search/Deployment-llama31-8b-gpu-l4.yaml").exists()
    assert (tmp_path / "a/_cluster/Namespace-llamafleet-search.yaml").exists()
    objects = [o for o in rendered_stack("prod").kubernetes_objects]
    assert len(first) == len(objects)  # one file per Kubernetes object


def test_each_team_gets_a_key_per_name_one_for_the_scraper_and_one_for_the_gateway() -> None:
    settings = load_stack_file(stack_file("prod"))
    inventory = rendered_stack("prod").declared
    keys = Counter(d.name.split("-", 1)[0] for d in inventory if d.type == API_KEY_TYPE)
    teams = {team: len(t.api_keys) + 2 for team, t in settings.tenants.items()}
    # Each cluster's gateway: LiteLLM's master key (never handed out) and Redis's password.
    assert keys == teams | {cluster: 2 for cluster in settings.clusters}
    assert [d.type for d in inventory].count("pulumi:providers:kubernetes") == 1


@pytest.mark.parametrize("stack_name", ["prod"])
def test_prod_places_the_gpu_model_on_the_l40s_tier_only(stack_name: str) -> None:
    deployments = by_name(rendered_stack(stack_name), "Deployment")
    assert ("llamafleet-support", "qwen25-32b-gpu-l40s") in deployments
    assert not [
        k for k in deployments if k[1].startswith("qwen25-32b") and not k[1].endswith("gpu-l40s")
    ]


def test_fetchers_read_the_store_with_a_role_or_the_stack_credentials(
    stack: str, rendered: Rendered
) -> None:
    settings = load_stack_file(stack_file(stack))
    store = settings.model_store
    for account in objects_of(rendered, "ServiceAccount"):
        annotations = account["metadata"].get("annotations", {})
        uses_role = "eks.amazonaws.com/role-arn" in annotations
        cluster_kinds = {c.kind for c in settings.clusters.values()}
        expected = store.credentials_secret is None and store.endpoint_url is None
        assert uses_role == (expected and "eks" in cluster_kinds), account["metadata"]["name"]
    for deployment in objects_of(rendered, "Deployment"):
        pod = deployment["spec"]["template"]["spec"]
        fetcher = pod["initContainers"][0]
        assert "envFrom" not in fetcher  # credentials are a mounted file, never environment
        secrets = [v["secret"]["secretName"] for v in pod["volumes"] if "secret" in v]
        env = {e["name"]: e["value"] for e in fetcher["env"]}
        if store.credentials_secret:
            assert store.credentials_secret in secrets
            assert env["AWS_SHARED_CREDENTIALS_FILE"].endswith("/credentials")
        else:
            assert "AWS_SHARED_CREDENTIALS_FILE" not in env


def model_with(**fields: Any) -> Model:
    """The local stack's model with `fields` (stack-file keys) replaced; `gguf` merged."""
    model = load_stack_file(stack_file("local")).models["gemma3-270m"]
    data = model.model_dump(by_alias=True, exclude_none=True)
    data["gguf"] |= fields.pop("gguf", {})
    return Model.model_validate(data | fields)


def test_check_pins_names_each_file_whose_synced_digest_differs() -> None:
    sync: Any = object()
    one = model_pins("m", model_with(digest="sha256:" + "a" * 64))
    assert check_pins(one, {"m": "sha256:" + "a" * 64, "other": "sha256:bb"}, sync) is sync
    split = model_with(
        digest="sha256:" + "a" * 64,
        shards=[{"digest": "sha256:" + "b" * 64, "sizeBytes": 1}] * 2,
        gguf={"splitCount": 3},
    )
    synced = {"m": "sha256:" + "a" * 64, "m#2": "sha256:" + "b" * 64, "m#3": "sha256:cc"}
    with pytest.raises(pulumi.RunError) as raised:
        check_pins(model_pins("m", split), synced, sync)
    (line,) = str(raised.value).splitlines()
    assert f"llamafleet:models.m.shards[1].digest: the stack pins sha256:{'b' * 64} but" in line


def test_adapters_and_projector_are_pinned_fetched_and_served(tmp_path: Path) -> None:
    adapters = [
        {"digest": "sha256:" + "b" * 64, "sizeBytes": 100, "source": "/adapters/a.gguf"},
        {"digest": "sha256:" + "c" * 64, "sizeBytes": 200, "scale": 0.5, "source": "/a/b.gguf"},
    ]
    projector = {"digest": "sha256:" + "d" * 64, "sizeBytes": 300, "source": "/p/mmproj.gguf"}
    model = model_with(digest="sha256:" + "a" * 64, adapters=adapters, projector=projector)
    pins = model_pins("m", model)
    assert {key: pin.key_path for key, pin in pins.items() if key != "m"} == {
        "m#adapter1": "models.m.adapters[0].digest",
        "m#adapter2": "models.m.adapters[1].digest",
        "m#projector": "models.m.projector.digest",
    }
    assert model.files_size_bytes == model.size_bytes + 600

    config = yaml.safe_load(stack_file("local").read_text())
    config["config"]["llamafleet:models"]["gemma3-270m"] |= {
        "adapters": adapters,
        "projector": projector,
    }
    stack = tmp_path / "Pulumi.local.yaml"
    stack.write_text(yaml.safe_dump(config))
    (deployment,) = [
        o for o in model_objects(render(str(stack)).kubernetes_objects) if o["kind"] == "Deployment"
    ]
    pod = deployment["spec"]["template"]["spec"]
    fetch = pod["initContainers"][0]["command"]
    assert [fetch[i + 1] for i, arg in enumerate(fetch) if arg == "--file"] == [
        "sha256:" + "b" * 64,
        "sha256:" + "c" * 64,
        "sha256:" + "d" * 64,
    ]
    args = pod["containers"][0]["args"]
    assert args[args.index("--lora") + 1] == f"/models/sha256/{'b' * 64}.gguf"
    assert args[args.index("--lora-scaled") + 1] == f"/models/sha256/{'c' * 64}.gguf:0.5"
    assert args[args.index("--mmproj") + 1] == f"/models/sha256/{'d' * 64}.gguf"


def test_a_team_spanning_clusters_renders_under_each_cluster(tmp_path: Path) -> None:
    rendered = rendered_stack("hybrid")
    write(rendered, tmp_path)
    for cluster in ("dc1", "burst"):
        assert (tmp_path / cluster / "_cluster/Namespace-llamafleet-search.yaml").exists()
        assert (tmp_path / cluster / "llamafleet-search/Secret-llamafleet-api-keys.yaml").exists()
    assert (tmp_path / "burst/llamafleet-search/Deployment-llama31-8b-aws-gpu-l4.yaml").exists()
    assert (tmp_path / "dc1/llamafleet-search/Deployment-llama31-8b-xeon-v2.yaml").exists()
    keys = [d for d in rendered.declared if d.type == API_KEY_TYPE and d.name.startswith("search-")]
    # One set for the team (2 names, the scraper's, the gateway's), whatever the clusters.
    assert len(keys) == 2 + 2


def test_built_images_are_what_the_pods_run_by_digest() -> None:
    rendered = rendered_stack("prod")
    images = [d for d in rendered.declared if d.type == "llamafleet:images:LlamaCppImage"]
    assert sorted(d.name for d in images) == [
        "image-cpu",
        "image-cuda",
        "image-fetcher",
        "image-gateway",
        "image-redis",
    ]
    repositories = {
        d.inputs["name"] for d in rendered.declared if d.type == "aws:ecr/repository:Repository"
    }
    assert repositories == {
        "llamafleet/llama-server",
        "llamafleet/llama-server-cuda",
        "llamafleet/model-fetcher",
        "llamafleet/gateway",
        "llamafleet/gateway-redis",
    }
    deployments = [o for o in rendered.kubernetes_objects if o["kind"] == "Deployment"]
    assert len(deployments) > len(objects_of(rendered, "Deployment"))  # the gateway's too
    for deployment in deployments:
        pod = deployment["spec"]["template"]["spec"]
        for container in (*pod.get("initContainers", []), *pod["containers"]):
            repository = container["image"].split("/", 1)[1].split("@")[0]
            assert repository in repositories
            assert container["image"].split("@")[1].startswith("sha256:")


def test_referenced_images_declare_no_build() -> None:
    rendered = rendered_stack("local")
    assert not [d for d in rendered.declared if d.type.startswith("llamafleet:images:")]


def test_no_key_value_reaches_a_pod_spec(rendered: Rendered) -> None:
    """Keys reach llama-server only as a mounted file: no key value is in any Deployment's
    inputs (argv, env), while the Secrets do hold them (the control)."""
    keys = {f"mock-{d.name}" for d in rendered.declared if d.type == API_KEY_TYPE}
    assert keys

    def raw(kind: str) -> str:
        return json.dumps(
            [d.inputs for d in rendered.declared if d.type == f"kubernetes:{kind}"], default=str
        )

    deployments, secrets = raw("apps/v1:Deployment"), raw("core/v1:Secret")
    assert any(key in secrets for key in keys)
    assert [key for key in keys if key in deployments] == []


def test_two_objects_at_one_path_write_nothing(tmp_path: Path) -> None:
    from llamafleet.command.mock_run import Declared  # noqa: PLC0415

    obj = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "x", "namespace": "n"}}
    twins = [
        Declared(
            urn=f"urn:{i}",
            type="kubernetes:core/v1:ConfigMap",
            name=f"x{i}",
            parent="",
            custom=True,
            inputs=obj,
        )
        for i in range(2)
    ]
    with pytest.raises(ValueError, match="two objects render to"):
        write(Rendered(twins), tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_a_store_without_checksum_headers_turns_them_off_in_every_client(tmp_path: Path) -> None:
    """`modelStore.checksumHeaders: false` (stores that refuse x-amz-checksum-*, c06) reaches
    `up`'s sync and every pod's fetch; the default sends them."""
    config = yaml.safe_load(stack_file("local").read_text())
    config["config"]["llamafleet:modelStore"]["checksumHeaders"] = False
    copy = tmp_path / "Pulumi.local.yaml"
    copy.write_text(yaml.safe_dump(config))

    for rendered, off in ((render(str(copy)), True), (rendered_stack("local"), False)):
        (sync,) = [d for d in rendered.declared if d.name == "models-manifest"]
        assert (sync.inputs.get("checksumHeaders") is False) is off
        deployments = objects_of(rendered, "Deployment")
        assert deployments
        for deployment in deployments:
            fetch = deployment["spec"]["template"]["spec"]["initContainers"][0]["command"]
            assert ("--no-checksum-headers" in fetch) is off


def test_a_split_model_is_fetched_whole_and_served_from_its_first_shard(tmp_path: Path) -> None:
    """Every shard pinned in settings is fetched (each verified by the fetcher) and llama-server
    is given shard 1 under its split name, the others beside it (../shared/cases/c01)."""
    config = yaml.safe_load(stack_file("local").read_text())
    model = config["config"]["llamafleet:models"]["gemma3-270m"]
    shards = [{"digest": f"sha256:{c * 64}", "sizeBytes": 300 * 2**20} for c in "bc"]
    model["shards"], model["gguf"]["splitCount"] = shards, 3
    path = tmp_path / "Pulumi.local.yaml"
    path.write_text(yaml.safe_dump(config))

    rendered = render(str(path))

    (deployment,) = objects_of(rendered, "Deployment")
    pod = deployment["spec"]["template"]["spec"]
    fetch = pod["initContainers"][0]["command"]
    assert [fetch[i + 1] for i, arg in enumerate(fetch) if arg == "--shard"] == [
        shard["digest"] for shard in shards
    ]
    first = model["digest"].split(":")[1]
    assert flag(pod["containers"][0]["args"], "--model").endswith(
        f"/split/{first}/model-00001-of-00003.gguf"
    )
    (volume,) = [v for v in pod["volumes"] if v["name"] == "models"]
    total_mib = (model["sizeBytes"] + 600 * 2**20) / 2**20
    assert int(volume["emptyDir"]["sizeLimit"].removesuffix("Mi")) > total_mib
    assert violations(rendered.kubernetes_objects) == []
