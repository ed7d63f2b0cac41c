"""The gateway as every stack renders it: one per cluster that serves models, the only
load-balanced entry, holding key hashes only, and the models reachable from its pods alone."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import yaml
from pulumi.runtime.rpc import is_rpc_secret
from support.stack_renders import GATEWAY_NAMESPACE, gateway_objects, model_objects

from llamafleet.command.mock_run import Declared, run_program
from llamafleet.command.render import Rendered, cluster_of, is_kubernetes_object, render
from llamafleet.components.gateway import (
    BACKEND_KEYS_MARK,
    CONFIG_MARK,
    INTERNAL_KEY_MARK,
    Gateway,
    GatewayArgs,
    GatewayConfig,
    Peer,
)
from llamafleet.components.gateway_config import Backend
from llamafleet.settings.load import load_stack_file, stack_file
from llamafleet.settings.names import team_namespace
from llamafleet.settings.placement import placements
from llamafleet_gateway import environment
from llamafleet_gateway.routes import PEER, Routes

GATEWAY = "kubernetes:apps/v1:Deployment"


def kinds(objects: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [o for o in objects if o["kind"] == kind]


def test_one_gateway_per_cluster_that_serves_models(stack: str, rendered: Rendered) -> None:
    settings = load_stack_file(stack_file(stack))
    serving = {p.cluster_name for p in placements(settings)}
    gateways = [d for d in rendered.declared if d.type == "llamafleet:serving:Gateway"]
    assert sorted(d.name for d in gateways) == sorted(f"{c}-gateway" for c in serving)


def _tables(rendered: Rendered) -> dict[str, Routes]:
    """Each gateway's routing table, by its cluster."""
    return {
        cluster_of(d): Routes.from_json(d.inputs["data"]["routes.json"])
        for d in rendered.declared
        if is_kubernetes_object(d)
        and d.inputs["kind"] == "ConfigMap"
        and d.inputs["metadata"]["name"] == "llamafleet-gateway"
    }


def test_each_gateway_routes_every_placement_its_own_cluster_directly(
    stack: str, rendered: Rendered
) -> None:
    """Every gateway routes every team's models in tier order: its own cluster's tiers
    directly, the others' through their gateways (peer)."""
    settings = load_stack_file(stack_file(stack))
    tables = _tables(rendered)
    assert tables
    for cluster, table in tables.items():
        routed = [
            (team, name, tier.tier, tier.peer)
            for team, route in table.teams.items()
            for name, model in route.models.items()
            for tier in model.tiers
        ]
        expected = [
            (
                p.team,
                p.model_name,
                p.tier_name,
                None if p.cluster_name == cluster else p.cluster_name,
            )
            for p in placements(settings)
        ]
        assert sorted(routed) == sorted(expected)
        for team, route in table.teams.items():
            for name, model in route.models.items():
                order = [p.tier_name for p in placements(settings, team) if p.model_name == name]
                assert [t.tier for t in model.tiers] == order
    for table in tables.values():
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
        # 443 with TLS (at the NLB or the pods), 4000 without: one port, the OpenAI one.
        ((port,),) = [service["spec"]["ports"]]
        assert port["targetPort"] == "http" and port["port"] in (443, 4000)
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
    """A generating server's --n-predict is the model's maxTokens; an embeddings server
    generates nothing and gets --embeddings instead."""
    settings = load_stack_file(stack_file(stack))
    for deployment in kinds(model_objects(rendered.kubernetes_objects), "Deployment"):
        model = settings.models[deployment["metadata"]["labels"]["llamafleet.io/model"]]
        args = deployment["spec"]["template"]["spec"]["containers"][0]["args"]
        if model.embeddings is not None:
            assert "--embeddings" in args and "--n-predict" not in args
        else:
            assert args[args.index("--n-predict") + 1] == str(model.max_tokens)
            assert "--embeddings" not in args


def _gateway_of(stack: str, namespace: str = GATEWAY_NAMESPACE) -> dict[str, dict[str, Any]]:
    from support.stack_renders import rendered_stack  # noqa: PLC0415

    objects = gateway_objects(rendered_stack(stack).kubernetes_objects)
    return {
        f"{o['kind']}/{o['metadata']['name']}": o
        for o in objects
        if o["metadata"].get("namespace") == namespace
    }


def test_on_eks_the_nlb_terminates_tls_with_the_acm_certificate() -> None:
    service = _gateway_of("prod")["Service/llamafleet-gateway"]
    annotations = service["metadata"]["annotations"]
    arn = "arn:aws:acm:eu-west-1:123456789012:certificate/00000000-0000-0000-0000-000000000000"
    assert annotations["service.beta.kubernetes.io/aws-load-balancer-ssl-cert"] == arn
    assert annotations["service.beta.kubernetes.io/aws-load-balancer-ssl-ports"] == "443"
    assert (
        "TLS13"
        in annotations["service.beta.kubernetes.io/aws-load-balancer-ssl-negotiation-policy"]
    )
    assert service["spec"]["ports"] == [{"name": "https", "port": 443, "targetPort": "http"}]
    pod = _gateway_of("prod")["Deployment/llamafleet-gateway"]["spec"]["template"]["spec"]
    assert "--ssl_certfile_path" not in pod["containers"][0]["args"]


def _gateway_namespace(stack: str) -> dict[str, Any]:
    from support.stack_renders import rendered_stack  # noqa: PLC0415

    (namespace,) = [
        o
        for o in rendered_stack(stack).kubernetes_objects
        if o["kind"] == "Namespace" and o["metadata"]["name"] == GATEWAY_NAMESPACE
    ]
    return namespace


READINESS_GATE = "elbv2.k8s.aws/pod-readiness-gate-inject"


def test_on_eks_a_gateway_pod_is_ready_only_once_the_nlb_sees_it_healthy() -> None:
    """The NLB targets pod IPs: the AWS Load Balancer Controller's readiness gate (injected in a
    namespace so labelled) holds a rolling update until the NLB sees the new pod healthy; with
    no node hop, externalTrafficPolicy is left unset."""
    assert _gateway_namespace("prod")["metadata"]["labels"][READINESS_GATE] == "enabled"
    service = _gateway_of("prod")["Service/llamafleet-gateway"]
    annotations = service["metadata"]["annotations"]
    assert annotations["service.beta.kubernetes.io/aws-load-balancer-nlb-target-type"] == "ip"
    assert (
        annotations["service.beta.kubernetes.io/aws-load-balancer-target-group-attributes"]
        == "deregistration_delay.timeout_seconds=30"  # prod's serving.deregistrationSeconds
    )
    assert "externalTrafficPolicy" not in service["spec"]


def test_on_prem_metallb_keeps_the_address_on_its_node_while_gateway_pods_roll() -> None:
    """Layer 2 with the Cluster policy: the elected node forwards to every gateway pod, and
    a rollout or a drain elsewhere does not move the address (load_balancing.metallb)."""
    service = _gateway_of("onprem")["Service/llamafleet-gateway"]
    assert service["spec"]["type"] == "LoadBalancer"
    assert service["spec"]["externalTrafficPolicy"] == "Cluster"
    assert READINESS_GATE not in _gateway_namespace("onprem")["metadata"]["labels"]


def test_a_drain_never_evicts_the_only_gateway_pod() -> None:
    """local runs one gateway pod (minReplicas 1): its eviction is refused; prod's two go one at
    a time; a pod that is not ready never blocks a drain."""
    budgets = {
        stack: _gateway_of(stack)["PodDisruptionBudget/llamafleet-gateway"]["spec"]
        for stack in ("local", "prod")
    }
    selector = {
        "matchLabels": {
            "app.kubernetes.io/name": "llamafleet-gateway",
            "app.kubernetes.io/part-of": "llamafleet",
        }
    }
    common = {"selector": selector, "unhealthyPodEvictionPolicy": "AlwaysAllow"}
    assert budgets == {
        "local": {"minAvailable": 1, **common},
        "prod": {"maxUnavailable": 1, **common},
    }


def test_on_prem_the_gateway_serves_tls_from_cert_managers_secret() -> None:
    objects = _gateway_of("onprem")
    certificate = objects["Certificate/llamafleet-gateway-tls"]["spec"]
    assert certificate["secretName"] == "llamafleet-gateway-tls"
    # The clients' name, and the Service's, so callers inside the cluster can verify it too.
    assert certificate["dnsNames"] == [
        "llm.dc1.example.internal",
        "llamafleet-gateway.llamafleet-gateway.svc",
        "llamafleet-gateway.llamafleet-gateway.svc.cluster.local",
    ]
    assert certificate["issuerRef"] == {"name": "dc1-internal-ca", "kind": "ClusterIssuer"}
    pod = objects["Deployment/llamafleet-gateway"]["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    args = container["args"]
    assert args[args.index("--ssl_certfile_path") + 1] == "/etc/llamafleet/tls/tls.crt"
    assert args[args.index("--ssl_keyfile_path") + 1] == "/etc/llamafleet/tls/tls.key"
    assert {"name": "tls", "secret": {"secretName": "llamafleet-gateway-tls"}} in pod["volumes"]
    assert {p: container[p]["httpGet"]["scheme"] for p in ("readinessProbe", "livenessProbe")} == {
        "readinessProbe": "HTTPS",
        "livenessProbe": "HTTPS",
    }
    service = objects["Service/llamafleet-gateway"]
    assert service["spec"]["ports"] == [{"name": "https", "port": 443, "targetPort": "http"}]


def test_a_given_tls_secret_is_mounted_as_is() -> None:
    from support.stack_renders import rendered_stack  # noqa: PLC0415

    gateways = [
        o
        for o in gateway_objects(rendered_stack("hybrid").kubernetes_objects)
        if o["kind"] == "Deployment" and o["metadata"]["name"] == "llamafleet-gateway"
    ]
    volumes = [g["spec"]["template"]["spec"]["volumes"] for g in gateways]
    tls = {"name": "tls", "secret": {"secretName": "llm-dc1-tls"}}
    # dc1's gateway serves TLS itself; the EKS one leaves it to its NLB.
    assert sorted(tls in v for v in volumes) == [False, True]


def test_plain_http_only_where_the_gateway_is_not_load_balanced() -> None:
    objects = _gateway_of("local")
    service = objects["Service/llamafleet-gateway"]
    assert service["spec"] == service["spec"] | {"type": "ClusterIP"}
    assert service["spec"]["ports"] == [{"name": "http", "port": 4000, "targetPort": "http"}]
    assert not [k for k in objects if k.startswith("Certificate/")]


def test_keda_also_scales_each_tier_on_the_gateways_demand_for_it(
    stack: str, rendered: Rendered
) -> None:
    settings = load_stack_file(stack_file(stack))
    scaled = {
        (o["metadata"]["namespace"], o["metadata"]["name"]): o
        for o in kinds(rendered.kubernetes_objects, "ScaledObject")
    }
    for placement in placements(settings):
        key = (team_namespace(placement.team), placement.name)
        if key not in scaled:
            continue  # an HPA cluster
        queue, demand = scaled[key]["spec"]["triggers"]
        assert "llamacpp:requests_deferred" in queue["metadata"]["query"]
        labels = (
            f'team="{placement.team}",model="{placement.model_name}",tier="{placement.tier_name}"'
        )
        assert (
            demand["metadata"]["query"] == f"sum(llamafleet_gateway_requests_in_flight{{{labels}}})"
        )
        model = placement.model
        assert demand["metadata"]["threshold"] == str(model.parallel + model.queue_per_replica)


def test_the_gateways_demand_is_scraped_where_prometheus_operator_runs(
    stack: str, rendered: Rendered
) -> None:
    settings = load_stack_file(stack_file(stack))
    objects = gateway_objects(rendered.kubernetes_objects)
    monitors = kinds(objects, "ServiceMonitor")
    wanted = sum(
        c.service_monitors
        for name, c in settings.clusters.items()
        if any(p.cluster_name == name for p in placements(settings))
    )
    assert len(monitors) == wanted
    for monitor in monitors:
        assert monitor["spec"]["endpoints"][0]["port"] == "metrics"
    metrics = [s for s in kinds(objects, "Service") if s["metadata"]["name"].endswith("-metrics")]
    assert all(s["spec"]["type"] == "ClusterIP" for s in metrics) and len(metrics) == wanted


def test_in_a_hybrid_stack_each_gateway_reaches_the_other_by_name_with_its_peer_key() -> None:
    from support.stack_renders import rendered_stack  # noqa: PLC0415

    rendered = rendered_stack("hybrid")
    by_cluster: dict[str, dict[str, dict[str, Any]]] = {}
    for declared in rendered.declared:
        if is_kubernetes_object(declared) and declared.inputs["metadata"].get("namespace") == (
            GATEWAY_NAMESPACE
        ):
            obj = declared.redacted_inputs
            by_cluster.setdefault(cluster_of(declared), {})[
                f"{obj['kind']}/{obj['metadata']['name']}"
            ] = obj
    other = {"dc1": "burst", "burst": "dc1"}
    for cluster, objects in by_cluster.items():
        config = yaml.safe_load(objects["ConfigMap/llamafleet-gateway"]["data"]["config.yaml"])
        peer = other[cluster]
        forwarded = [
            d["litellm_params"]
            for d in config["model_list"]
            if d["litellm_params"]["api_base"].startswith("https://")
        ]
        assert forwarded and all(
            p["api_base"] == f"https://llm.{peer}.corp.example/v1"
            and p["api_key"] == f"os.environ/LLAMAFLEET_PEER_KEY_{peer.upper()}"
            for p in forwarded
        ), forwarded
        pod = objects["Deployment/llamafleet-gateway"]["spec"]["template"]["spec"]
        env = {e["name"]: e for e in pod["containers"][0]["env"]}
        assert env[f"LLAMAFLEET_PEER_KEY_{peer.upper()}"]["valueFrom"]["secretKeyRef"] == {
            "name": "llamafleet-gateway-env",
            "key": f"LLAMAFLEET_PEER_KEY_{peer.upper()}",
        }
        egress = objects["NetworkPolicy/llamafleet-gateway"]["spec"]["egress"]
        cidr = {"dc1": "10.20.30.48/32", "burst": "10.60.0.0/16"}[peer]
        assert {
            "to": [{"ipBlock": {"cidr": cidr}}],
            "ports": [{"protocol": "TCP", "port": 443}],
        } in (egress)


def _declare_gateway(peer_key: str | None, peers: list[Peer]) -> dict[str, Declared]:
    def program() -> None:
        Gateway(
            "gw",
            GatewayArgs(
                namespace="gw",
                config=GatewayConfig(),
                image="i",
                redis_image="r",
                backends=[Backend("a", "m", "t", "http://m-t.a.svc:8080/v1", 2, 64)],
                limits={},
                team_keys={"a": ["team-key"]},
                internal_keys={"a": "internal"},
                team_namespaces=["a"],
                monitoring_namespace="monitoring",
                request_timeout_seconds=60,
                exposure=None,
                peer_key=peer_key,
                peers=peers,
            ),
        )

    declared = run_program(program, "test", {})
    return {
        f"{d.inputs['kind']}/{d.inputs['metadata']['name']}": d
        for d in declared
        if is_kubernetes_object(d)
    }


def _plain(value: Any) -> Any:
    return value["value"] if is_rpc_secret(value) else value


def test_a_gateway_accepts_its_peer_key_as_the_peer_and_presents_the_others() -> None:
    ca = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----"
    objects = _declare_gateway(
        "own-peer-key", [Peer("burst", "burst-peer-key", "10.60.0.0/16", ca)]
    )
    hashes = json.loads(
        _plain(_plain(objects["Secret/llamafleet-gateway-keys"].inputs["stringData"])["keys.json"])
    )
    assert hashes[hashlib.sha256(b"own-peer-key").hexdigest()] == PEER
    assert hashes[hashlib.sha256(b"team-key").hexdigest()] == "a"
    env = _plain(objects["Secret/llamafleet-gateway-env"].inputs["stringData"])
    assert _plain(env["LLAMAFLEET_PEER_KEY_BURST"]) == "burst-peer-key"
    config = objects["ConfigMap/llamafleet-gateway"].inputs["data"]
    assert config["peer-ca.pem"] == ca + "\n"
    pod = objects["Deployment/llamafleet-gateway"].inputs["spec"]["template"]["spec"]
    variables = {e["name"]: e.get("value") for e in pod["containers"][0]["env"]}
    assert variables[environment.PEER_CA] == "/etc/llamafleet/gateway/peer-ca.pem"


def test_a_gateway_without_peers_accepts_no_peer_key_and_trusts_public_cas() -> None:
    objects = _declare_gateway(None, [])
    hashes = json.loads(
        _plain(_plain(objects["Secret/llamafleet-gateway-keys"].inputs["stringData"])["keys.json"])
    )
    assert PEER not in hashes.values()
    assert "peer-ca.pem" not in objects["ConfigMap/llamafleet-gateway"].inputs["data"]
    pod = objects["Deployment/llamafleet-gateway"].inputs["spec"]["template"]["spec"]
    assert environment.PEER_CA not in {e["name"] for e in pod["containers"][0]["env"]}


def test_a_model_may_scale_to_zero_where_the_gateways_demand_wakes_it(tmp_path: Path) -> None:
    """../shared/cases/c04: min 0 with KEDA, whose ScaledObject also follows the gateway's
    demand (present at zero pods), and whose tier the gateway holds requests for while it
    wakes (serving.wakeSeconds)."""
    document = yaml.safe_load(stack_file("prod").read_text())
    document["config"]["llamafleet:models"]["qwen25-32b"]["replicas"]["min"] = 0
    path = tmp_path / "Pulumi.zero.yaml"
    path.write_text(yaml.safe_dump(document))
    objects = render(str(path)).kubernetes_objects
    (scaled,) = [
        o
        for o in kinds(objects, "ScaledObject")
        if o["spec"]["scaleTargetRef"]["name"] == "qwen25-32b-gpu-l40s"
    ]
    assert scaled["spec"]["minReplicaCount"] == 0
    queries = [t["metadata"]["query"] for t in scaled["spec"]["triggers"]]
    assert any("llamafleet_gateway_requests_in_flight" in q for q in queries), queries
    (config,) = [
        o for o in kinds(gateway_objects(objects), "ConfigMap") if "routes.json" in o["data"]
    ]
    table = Routes.from_json(config["data"]["routes.json"])
    wakes = {
        tier.group: tier.wake_seconds
        for team in table.teams.values()
        for model in team.models.values()
        for tier in model.tiers
    }
    assert wakes["support/qwen25-32b/gpu-l40s"] == 300
    assert {w for g, w in wakes.items() if "qwen25-32b" not in g} == {0}
