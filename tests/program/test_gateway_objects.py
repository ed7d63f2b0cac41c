"""The gateway as every stack renders it: one per cluster that serves models, the only
load-balanced entry, holding key hashes only, and the models reachable from its pods alone."""

from __future__ import annotations

import json
from typing import Any

import yaml
from support.stack_renders import GATEWAY_NAMESPACE, gateway_objects, model_objects

from llamafleet.command.render import Rendered
from llamafleet.components.gateway import BACKEND_KEYS_MARK, CONFIG_MARK, INTERNAL_KEY_MARK
from llamafleet.settings.load import load_stack_file, stack_file
from llamafleet.settings.placement import placements
from llamafleet_gateway.routes import Routes, group_name

GATEWAY = "kubernetes:apps/v1:Deployment"


def kinds(objects: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [o for o in objects if o["kind"] == kind]


def test_one_gateway_per_cluster_that_serves_models(stack: str, rendered: Rendered) -> None:
    settings = load_stack_file(stack_file(stack))
    serving = {p.cluster_name for p in placements(settings)}
    gateways = [d for d in rendered.declared if d.type == "llamafleet:serving:Gateway"]
    assert sorted(d.name for d in gateways) == sorted(f"{c}-gateway" for c in serving)


def test_the_gateway_routes_every_placement_of_its_cluster(stack: str, rendered: Rendered) -> None:
    settings = load_stack_file(stack_file(stack))
    tables = [
        Routes.from_json(o["data"]["routes.json"])
        for o in kinds(gateway_objects(rendered.kubernetes_objects), "ConfigMap")
    ]
    groups = {
        tier.group
        for table in tables
        for team in table.teams.values()
        for model in team.models.values()
        for tier in model.tiers
    }
    expected = {group_name(p.team, p.model_name, p.tier_name) for p in placements(settings)}
    assert groups == expected
    for table in tables:
        for team, route in table.teams.items():
            for name, model in route.models.items():
                assert model.max_tokens == settings.models[name].max_tokens
                assert all(t.group.startswith(f"{team}/{name}/") for t in model.tiers)


def test_only_the_gateway_is_load_balanced_and_only_on_its_openai_port(
    stack: str, rendered: Rendered
) -> None:
    settings = load_stack_file(stack_file(stack))
    services = kinds(rendered.kubernetes_objects, "Service")
    balanced = [s for s in services if s["spec"]["type"] == "LoadBalancer"]
    assert all(s["metadata"]["namespace"] == GATEWAY_NAMESPACE for s in balanced)
    gateways = [s for s in services if s["metadata"]["name"] == "llamafleet-gateway"]
    assert gateways
    for service in gateways:
        assert [p["port"] for p in service["spec"]["ports"]] == [4000]
    wanted = {c.load_balancer.type for c in settings.clusters.values()}
    assert {s["spec"]["type"] for s in gateways} <= wanted
    assert all(s["spec"]["type"] == "ClusterIP" for s in kinds(model_objects(services), "Service"))


def test_local_needs_no_load_balancer_and_no_volume_provisioner() -> None:
    from support.stack_renders import rendered_stack  # noqa: PLC0415

    objects = gateway_objects(rendered_stack("local").kubernetes_objects)
    assert {s["spec"]["type"] for s in kinds(objects, "Service")} == {"ClusterIP"}
    assert not kinds(objects, "PersistentVolumeClaim")
    for deployment in kinds(objects, "Deployment"):
        volumes = deployment["spec"]["template"]["spec"]["volumes"]
        assert all({"emptyDir", "secret", "configMap"} & set(v) for v in volumes)


def test_models_admit_the_gateway_pods_only(rendered: Rendered) -> None:
    for policy in kinds(model_objects(rendered.kubernetes_objects), "NetworkPolicy"):
        for rule in policy["spec"].get("ingress", []):
            for peer in rule["from"]:
                namespace = peer["namespaceSelector"]["matchLabels"]["kubernetes.io/metadata.name"]
                if namespace == GATEWAY_NAMESPACE:
                    assert peer["podSelector"] == {
                        "matchLabels": {"app.kubernetes.io/name": "llamafleet-gateway"}
                    }


def test_the_gateway_holds_no_plain_key_and_marks_are_not_secret(rendered: Rendered) -> None:
    objects = gateway_objects(rendered.kubernetes_objects)
    for config in kinds(objects, "ConfigMap"):
        text = json.dumps(config["data"])
        assert "os.environ/LLAMAFLEET_KEY_" in text
        assert "sk-" not in text and "requirepass" not in text
    for secret in kinds(objects, "Secret"):
        assert secret["stringData"] == "[secret]" or all(
            v == "[secret]" for v in secret["stringData"].values()
        ), secret["metadata"]["name"]
    gateways = [
        d for d in kinds(objects, "Deployment") if d["metadata"]["name"] == "llamafleet-gateway"
    ]
    assert gateways
    for gateway in gateways:
        marks = gateway["spec"]["template"]["metadata"]["annotations"]
        assert set(marks) == {CONFIG_MARK, BACKEND_KEYS_MARK}
        assert "[secret]" not in yaml.safe_dump(gateway)
    for deployment in kinds(model_objects(rendered.kubernetes_objects), "Deployment"):
        template = deployment["spec"]["template"]["metadata"]
        assert INTERNAL_KEY_MARK in template["annotations"]
        assert "[secret]" not in yaml.safe_dump(deployment)


def test_servers_default_to_the_models_max_tokens(stack: str, rendered: Rendered) -> None:
    settings = load_stack_file(stack_file(stack))
    for deployment in kinds(model_objects(rendered.kubernetes_objects), "Deployment"):
        model = deployment["metadata"]["labels"]["llamafleet.io/model"]
        args = deployment["spec"]["template"]["spec"]["containers"][0]["args"]
        assert args[args.index("--n-predict") + 1] == str(settings.models[model].max_tokens)
