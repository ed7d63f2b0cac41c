"""Rules that span several settings: placement, fit, references and quotas.

Each returns `Problem`s naming the key path, so the loader can report them like schema errors.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from ipaddress import ip_address
from urllib.parse import urlsplit

from llamafleet.components.inference_pod import (
    drain_max_seconds,
    longest_request_seconds,
    termination_grace_seconds,
)
from llamafleet.components.node_tier import NODE_GROUP_SUFFIX, NODE_ROLE_SUFFIX
from llamafleet.components.sizing import (
    FETCHER_CPU,
    FETCHER_MEMORY_BYTES,
    GiB,
    PodSizing,
    fit_problems,
)
from llamafleet.settings.aws_facts import INSTANCE_FAMILIES, InstanceFamily, instance_family
from llamafleet.settings.names import (
    AUTONAME_SUFFIX_LENGTH,
    DNS_1035_LABEL,
    DNS_1123_LABEL,
    DNS_LABEL_MAX,
    EKS_CLUSTER_MAX,
    IAM_ROLE_MAX,
    NODE_GROUP_MAX,
    eks_cluster_name,
    instance_name,
    node_tier_name,
    pod_role_name,
    team_namespace,
)
from llamafleet.settings.placement import Placement, placements, pod_sizing, tier_shape
from llamafleet.settings.schema import Cluster, Model, Quota, Settings, Tier
from llamafleet.settings.types import ISA_LEVELS


@dataclass(frozen=True)
class Problem:
    """One problem: the key path under `llamafleet:` (e.g. `models.x.tiers[0]`; "": the whole
    stack file) and what is wrong there."""

    path: str
    message: str


def check(
    settings: Settings, encrypted: frozenset[str] = frozenset(), stack: str | None = None
) -> list[Problem]:
    """Every cross-field problem of `settings`, as (key path, message) pairs; empty when the
    stack is consistent. `encrypted` names the settings that were encrypted in the stack file
    (see llamafleet.settings.load.encrypted_keys). The team quotas are sums over every placement's
    pod size, so they are checked only once each placement is valid on its own: a model that does
    not fit its tier is one problem, not also a quota it then seems to exceed. Likewise models
    are placed only on tiers that are valid, so each mistake is reported once, where it is."""
    stages: list[Callable[[], Iterable[Problem]]] = [
        # Each section on its own.
        lambda: [
            *_store_credentials(settings, encrypted),
            *_receiver_secrets(settings, encrypted),
            *_tiers(settings),
            *_cluster_kinds(settings),
            *_monitoring_namespaces(settings),
            *_images(settings),
            *_former_names(settings),
        ],
        # Tiers as their cluster's kind provides them (eks node groups, named on-prem nodes).
        lambda: _node_tiers(settings),
        # Models placed on tiers, teams calling models.
        lambda: [*_models(settings), *_tenant_models(settings), *_peers(settings)],
        # The names built from them (`stack`: the EKS cluster name; None skips that check).
        lambda: _built_names(settings, stack),
        # Sums over the placements.
        lambda: _quotas(settings),
    ]
    for stage in stages:
        problems = list(stage())
        if problems:
            return problems
    return []


def is_encrypted(path: str, encrypted: frozenset[str]) -> bool:
    """Whether the setting at `path` was encrypted (it, or a key holding it, is in `encrypted`)."""
    return any(path == e or path.startswith((f"{e}.", f"{e}[")) for e in encrypted)


def _is_loopback(url: str | None) -> bool:
    host = urlsplit(url).hostname if url else None
    if host == "localhost":
        return True
    try:
        return host is not None and ip_address(host).is_loopback
    except ValueError:
        return False


def _store_credentials(settings: Settings, encrypted: frozenset[str]) -> Iterator[Problem]:
    store = settings.model_store
    path = "modelStore"
    if store.credentials is not None and store.credentials_secret is None:
        yield Problem(f"{path}.credentialsSecret", "names the Secret that holds credentials")
    secret_path = f"{path}.credentials.secretAccessKey"
    if (
        store.credentials is not None
        and not is_encrypted(secret_path, encrypted)
        and not _is_loopback(store.endpoint_url)
    ):
        yield Problem(
            secret_path,
            "is in plain text in the stack file; set it with `pulumi config set --secret --path "
            "'llamafleet:modelStore.credentials.secretAccessKey' …` (plain text is only for a "
            "store on loopback)",
        )


def _receiver_secrets(settings: Settings, encrypted: frozenset[str]) -> Iterator[Problem]:
    """A receiver's URL or key reaches whoever reads the stack file: it must be encrypted."""
    for name, receiver in settings.alerting.receivers.items():
        kind, key = (
            ("slack", "apiUrl")
            if receiver.slack is not None
            else ("pagerduty", "routingKey")
            if receiver.pagerduty is not None
            else ("webhook", "url")
        )
        path = f"alerting.receivers.{name}.{kind}.{key}"
        if not is_encrypted(path, encrypted):
            yield Problem(
                path,
                "is in plain text in the stack file; set it with `pulumi config set --secret "
                f"--path 'llamafleet:{path}' …`",
            )


def _former_names(settings: Settings) -> Iterator[Problem]:
    """A former name is an alias of the renamed thing: it must not be another's current name."""
    tiers = {
        f"clusters.{c}.tiers.{t}": (t, tier.former_name)
        for c, cluster in settings.clusters.items()
        for t, tier in cluster.tiers.items()
    }
    for kind, named in (
        ("model", {f"models.{m}": (m, model.former_name) for m, model in settings.models.items()}),
        ("team", {f"tenants.{t}": (t, team.former_name) for t, team in settings.tenants.items()}),
        ("tier", tiers),
    ):
        current = {name for name, _ in named.values()}
        for path, (name, former) in named.items():
            if former is not None and former != name and former in current:
                yield Problem(
                    f"{path}.formerName",
                    f"{former!r} is the name of another {kind} in this stack; a former name "
                    "must be free",
                )


def _tiers(settings: Settings) -> Iterator[Problem]:
    seen: dict[str, str] = {}
    for cluster_name, cluster in settings.clusters.items():
        for tier_name, tier in cluster.tiers.items():
            path = f"clusters.{cluster_name}.tiers.{tier_name}"
            if tier_name in seen:
                yield Problem(
                    path,
                    f"tier name already used in cluster {seen[tier_name]}; tier names are "
                    "node labels and must be unique in a stack",
                )
            seen[tier_name] = cluster_name
            yield from _tier_gpu(path, tier)


def _tier_gpu(path: str, tier: Tier) -> Iterator[Problem]:
    if tier.kind == "gpu" and tier.gpu is None:
        yield Problem(f"{path}.gpu", "a gpu tier needs gpu: {type, count, memoryGib}")
    if tier.kind == "cpu" and tier.gpu is not None:
        yield Problem(f"{path}.gpu", "only gpu tiers have GPUs; set kind: gpu or remove gpu")


def _models(settings: Settings) -> Iterator[Problem]:
    tiers = {name: tier for c in settings.clusters.values() for name, tier in c.tiers.items()}
    has_gpu_tier = any(tier.kind == "gpu" for tier in tiers.values())
    on_gpus = [n for n, m in settings.models.items() if m.accelerator != "cpu" and has_gpu_tier]
    if on_gpus and not _has_image(settings, "cuda"):
        yield Problem("images.cuda", f"{', '.join(on_gpus)} may run on GPUs: set the CUDA image")
    misfits = _misfits(settings, tiers)
    small = _tiers_too_small(settings, misfits)
    placed: dict[str, Model] = {}
    for (cluster_name, tier_name), why in small.items():
        yield Problem(
            f"clusters.{cluster_name}.tiers.{tier_name}",
            "too small for several models: " + "; ".join(why.values()),
        )
    # A misfit said at its tier is not said again at the model.
    reported = {(model, tier_name) for (_, tier_name), why in small.items() for model in why}
    unreported = {pair: why for pair, why in misfits.items() if pair not in reported}
    for name, model in settings.models.items():
        path = f"models.{name}"
        if model.context_length > model.gguf.context_length:
            yield Problem(
                f"{path}.contextLength",
                f"{model.context_length} exceeds the {model.gguf.context_length} tokens the "
                "model was trained for",
            )
            continue  # sized with a context it cannot have, it would not fit anywhere either
        if model.replicas.min == 0:
            yield from _scale_to_zero(settings, path, model)
        if model.accelerator == "gpu" and not has_gpu_tier:
            yield Problem(
                f"{path}.accelerator", "gpu, but this stack has no gpu tier (all tiers are cpu)"
            )
            continue
        tier_problems = list(_model_tiers(path, name, model, tiers, unreported))
        yield from tier_problems
        if not tier_problems:  # a model that cannot go there is not also told how to drain
            placed[name] = model
    yield from _spot_reclaims(settings, placed, tiers)


# Seconds between a Spot Instance interruption notice and the instance's end ("a warning that is
# issued two minutes before Amazon EC2 stops or terminates your Spot Instance": docs.aws.amazon
# .com/AWSEC2/latest/UserGuide/spot-instance-termination-notices.html). An EKS managed node
# group drains the node when the notice (or, earlier, a rebalance recommendation) arrives
# (docs.aws.amazon.com/eks/latest/userguide/managed-node-groups.html, "Spot"), so a pod there has
# at most this long for its preStop drain and exit, whatever its grace period says.
SPOT_NOTICE_SECONDS = 120


def _spot_reclaims(
    settings: Settings, models: dict[str, Model], tiers: dict[str, Tier]
) -> Iterator[Problem]:
    """Models on spot tiers whose pods' grace period (InferenceService's: endpoint removal, the
    drain of its slots and queue at maxTokens / tokensPerSecond, llama-server's exit) is longer
    than the Spot notice: a reclaim would cut their requests in flight. One line for all of
    them (a tier made spot, or a model made slower, is one mistake), at the first such tier's
    capacityType."""
    serving = settings.serving
    slow: list[tuple[str, str, int]] = []
    for name, model in models.items():
        longest = longest_request_seconds(
            serving.request_timeout_seconds, model.max_tokens, model.tokens_per_second
        )
        drain = drain_max_seconds(model.parallel, model.queue_per_replica, longest)
        grace = termination_grace_seconds(serving.deregistration_seconds, drain)
        spot = [t for t in model.tiers if t in tiers and tiers[t].capacity_type == "spot"]
        if grace > SPOT_NOTICE_SECONDS and spot:
            slow += [(tier_name, name, grace) for tier_name in spot]
    if not slow:
        return
    first_tier = slow[0][0]
    cluster = next(c for c, cs in settings.clusters.items() if first_tier in cs.tiers)
    pairs = ", ".join(f"{model} on {tier} ({grace} s)" for tier, model, grace in slow)
    yield Problem(
        f"clusters.{cluster}.tiers.{first_tier}.capacityType",
        f"spot nodes go {SPOT_NOTICE_SECONDS} s after the reclaim notice, but these pods take "
        f"longer to drain and stop: {pairs}; lower their maxTokens or measure a higher "
        "tokensPerSecond, or place them on an on-demand tier",
    )


def _scale_to_zero(settings: Settings, path: str, model: Model) -> Iterator[Problem]:
    """Scale to zero needs a signal that exists at zero pods: llama-server's queue is its own
    metric, so with it alone the model would never come back (../shared/cases/c04). The
    gateway's demand per tier (KEDA's second trigger, scraped through the gateway's
    ServiceMonitor) is one, and the gateway holds a request while the tier wakes: so each
    cluster serving the model needs KEDA and ServiceMonitors (an HPA cannot scale from zero)."""
    lacking = sorted(
        {
            cluster_name
            for cluster_name, cluster in settings.clusters.items()
            if any(tier in cluster.tiers for tier in model.tiers)
            and (cluster.autoscaler != "keda" or not cluster.service_monitors)
        }
    )
    if lacking:
        yield Problem(
            f"{path}.replicas.min",
            f"0 (scale to zero) needs KEDA and the gateway's demand in Prometheus "
            f"(autoscaler: keda, serviceMonitors: true) on {', '.join(lacking)}: at zero pods "
            "only the gateway's demand can wake the model; use min 1",
        )


def _misfits(settings: Settings, tiers: dict[str, Tier]) -> dict[tuple[str, str], list[str]]:
    """Why each model does not fit each tier of its kind it names, sized with a context it can
    have: (model, tier) -> reasons, only where there are some. Computed once for the stack."""
    found: dict[tuple[str, str], list[str]] = {}
    for name, model in settings.models.items():
        if model.context_length > model.gguf.context_length:
            continue
        for tier_name in model.tiers:
            tier = tiers.get(tier_name)
            if tier is None or not _accelerator_fits(model, tier):
                continue
            reasons = fit_problems(pod_sizing(model, tier.kind), tier_shape(tier_name, tier))
            if reasons:
                found[(name, tier_name)] = [
                    f"model {name} does not fit on {tier_name}: it {reason}" for reason in reasons
                ]
    return found


def _tiers_too_small(
    settings: Settings, misfits: dict[tuple[str, str], list[str]]
) -> dict[tuple[str, str], dict[str, str]]:
    """Tiers that several of their models do not fit (one setting of the tier, e.g. its
    memory, is then the cause): (cluster, tier) -> model -> why."""
    found: dict[tuple[str, str], dict[str, str]] = {}
    for cluster_name, cluster in settings.clusters.items():
        for tier_name, tier in cluster.tiers.items():
            why = {
                name: "; ".join(reasons)
                for (name, misfit_tier), reasons in misfits.items()
                if misfit_tier == tier_name and _isa_fits(settings.models[name], tier)
            }
            if len(why) > 1:
                found[(cluster_name, tier_name)] = why
    return found


def _accelerator_fits(model: Model, tier: Tier) -> bool:
    return model.accelerator in ("any", tier.kind)


def _isa_fits(model: Model, tier: Tier) -> bool:
    return ISA_LEVELS.index(tier.isa) >= ISA_LEVELS.index(model.min_isa)


def _model_tiers(
    path: str,
    name: str,
    model: Model,
    tiers: dict[str, Tier],
    misfits: dict[tuple[str, str], list[str]],
) -> Iterator[Problem]:
    """Where the model cannot go, one line: at the tier entry when one is wrong, at `tiers`
    naming each when several are (one setting, e.g. minIsa or cpus, often rules out several)."""
    found: list[Problem] = []
    for index, tier_name in enumerate(model.tiers):
        tier = tiers.get(tier_name)
        tier_path = f"{path}.tiers[{index}]"
        if tier is None:
            found.append(Problem(tier_path, f"unknown tier {tier_name!r}; known: {sorted(tiers)}"))
            continue
        found += _placement(tier_path, name, model, tier_name, tier)
        found += [Problem(tier_path, reason) for reason in misfits.get((name, tier_name), [])]
    if len(found) > 1:
        found = [Problem(f"{path}.tiers", "; ".join(problem.message for problem in found))]
    yield from found


def _has_image(settings: Settings, flavour: str) -> bool:
    return settings.images.build is not None or getattr(settings.images, flavour) is not None


def _images(settings: Settings) -> Iterator[Problem]:
    images = settings.images
    if images.build is not None:
        for flavour in ("cpu", "cuda", "fetcher", "gateway", "redis"):
            if getattr(images, flavour) is not None:
                yield Problem(
                    f"images.{flavour}", "set either images.build or references, not both"
                )
        return
    for flavour in ("cpu", "fetcher", "gateway", "redis"):
        if getattr(images, flavour) is None:
            yield Problem(
                f"images.{flavour}",
                "is required (a reference pinned by digest) unless images.build",
            )


def _placement(path: str, name: str, model: Model, tier_name: str, tier: Tier) -> Iterator[Problem]:
    if not _accelerator_fits(model, tier):
        yield Problem(
            path, f"{tier_name} is a {tier.kind} tier but model {name} is {model.accelerator}"
        )
        return
    if not _isa_fits(model, tier):
        yield Problem(
            path, f"{tier_name} nodes are {tier.isa}, older than the model's minIsa {model.min_isa}"
        )


def _tenant_models(settings: Settings) -> Iterator[Problem]:
    for team, tenant in settings.tenants.items():
        for index, model in enumerate(tenant.models):
            if model not in settings.models:
                yield Problem(
                    f"tenants.{team}.models[{index}]",
                    f"unknown model {model!r}; known: {sorted(settings.models)}",
                )


def _quotas(settings: Settings) -> Iterator[Problem]:
    """Each team's quota against what its minimum replicas plus one rollout surge pod need, in
    each cluster it runs in (each cluster enforces the quota on its own namespace): one line
    per quota key, naming every cluster that needs more."""
    for team, tenant in settings.tenants.items():
        team_placements = list(placements(settings, team))
        short: dict[str, list[tuple[str, float]]] = {}
        for cluster in dict.fromkeys(p.cluster_name for p in team_placements):
            in_cluster = [p for p in team_placements if p.cluster_name == cluster]
            for key, need in _quota_needs(in_cluster).items():
                if need > getattr(tenant.quota, key):
                    short.setdefault(key, []).append((cluster, need))
        for key, needs in short.items():
            field = Quota.model_fields[key]
            unit = " GiB" if key == "memory_gib" else ""
            have = f"{getattr(tenant.quota, key):g}{unit}"
            if len(needs) == 1:
                need = f"the {needs[0][1]:g}{unit}"
            else:
                need = "what, per cluster, " + ", ".join(f"{n:g}{unit} in {c}" for c, n in needs)
            yield Problem(
                f"tenants.{team}.quota.{field.alias or key}",
                f"{have} is below {need} the team's minimum replicas plus one rollout surge pod "
                "need",
            )


def _quota_needs(team_placements: list[Placement]) -> dict[str, float]:
    """What one cluster's share of a team needs, by Quota field (memory in GiB)."""
    pods = [(p.sizing, p.model.replicas.min) for p in team_placements]
    # A rolling update with maxUnavailable 0 needs room for one surge pod on top of the minimum.
    return {
        # The surge pod can be any of them: the largest of each resource, counted apart.
        "cpus": sum(_cpus(s) * n for s, n in pods) + max(_cpus(s) for s, _ in pods),
        "memory_gib": (sum(_memory(s) * n for s, n in pods) + max(_memory(s) for s, _ in pods))
        / GiB,
        "gpus": sum(s.gpus * n for s, n in pods) + max(s.gpus for s, _ in pods),
        "pods": sum(n for _, n in pods) + 1,
    }


def _cpus(sizing: PodSizing) -> float:
    # The quota counts the larger of the init container and the main container.
    return max(sizing.cpus, FETCHER_CPU)


def _memory(sizing: PodSizing) -> int:
    return max(sizing.memory_bytes, FETCHER_MEMORY_BYTES)


def _cluster_kinds(settings: Settings) -> Iterator[Problem]:
    for name, cluster in settings.clusters.items():
        path = f"clusters.{name}"
        kind_problems = list(_kind_settings(path, cluster))
        yield from kind_problems
        if cluster.load_balancer.address and not (cluster.onprem and cluster.onprem.metallb):
            yield Problem(
                f"{path}.loadBalancer.address", "a fixed address needs onprem.metallb (on-prem)"
            )
        # A wrong kind is the one mistake: the load balancer's TLS follows from the kind.
        if not kind_problems:
            yield from _gateway_tls(path, cluster)


def _kind_settings(path: str, cluster: Cluster) -> Iterator[Problem]:
    if cluster.kind == "existing" and cluster.eks is not None:
        yield Problem(f"{path}.eks", "only kind: eks clusters take eks settings")
    if cluster.kind == "eks" and cluster.onprem is not None:
        yield Problem(f"{path}.onprem", "only kind: existing clusters take onprem settings")
    if cluster.kind == "eks" and cluster.eks is None:
        yield Problem(f"{path}.eks", "kind: eks needs eks: {availabilityZones: [...]}")


def _monitoring_namespaces(settings: Settings) -> Iterator[Problem]:
    """The stack makes a monitoring namespace only where nothing else does: not where it
    installs kube-prometheus-stack (Helm makes it), and never one the stack makes for other
    objects (a team's, the gateway's) or the cluster's own."""
    taken = {team_namespace(team) for team in settings.tenants}
    taken.add(settings.serving.gateway_namespace)
    for name, cluster in settings.clusters.items():
        if not cluster.create_monitoring_namespace:
            continue
        where = f"clusters.{name}.createMonitoringNamespace"
        if cluster.addons is not None and cluster.addons.prometheus == "install":
            yield Problem(where, "addons.prometheus install makes monitoringNamespace already")
        namespace = cluster.monitoring_namespace
        if namespace in taken or namespace.startswith("kube-") or namespace == "default":
            yield Problem(
                where,
                f"the stack cannot make {namespace}, it is taken: name another monitoringNamespace",
            )


def _gateway_tls(path: str, cluster: Cluster) -> Iterator[Problem]:
    """Plain HTTP only where nothing outside the cluster reaches the gateway (ClusterIP);
    on EKS the NLB terminates TLS (an ACM certificate), on-prem the gateway itself."""
    lb = cluster.load_balancer
    where = f"{path}.loadBalancer.tls"
    if lb.type == "LoadBalancer" and lb.tls is None:
        wanted = "certificateArn (ACM)" if cluster.kind == "eks" else "secretName or certManager"
        yield Problem(where, f"the gateway's load balancer needs TLS: give {wanted}")
    elif lb.tls is not None and cluster.kind == "eks" and lb.type == "LoadBalancer":
        if lb.tls.certificate_arn is None:
            yield Problem(where, "on EKS the NLB terminates TLS: give certificateArn (ACM)")
    elif lb.tls is not None and lb.tls.certificate_arn is not None:
        yield Problem(f"{where}.certificateArn", "an ACM certificate needs an EKS load balancer")


def _peers(settings: Settings) -> Iterator[Problem]:
    """Where two or more clusters serve models, each cluster's gateway routes every team's
    models, reaching the other clusters' tiers through their gateways: by hostname (which the
    TLS certificate covers) and, for the NetworkPolicy, at a known address (an EKS VPC's, or
    the on-prem fixed one)."""
    serving = list(dict.fromkeys(p.cluster_name for p in placements(settings)))
    if len(serving) < 2:
        return
    for name in serving:
        cluster = settings.clusters[name]
        lb = cluster.load_balancer
        path = f"clusters.{name}.loadBalancer"
        others = [other for other in serving if other != name]
        whose = (
            f"the gateway of {others[0]} reaches"
            if len(others) == 1
            else (f"the gateways of {', '.join(others)} reach")
        )
        why = f"{whose} this cluster's tiers through its gateway"
        if lb.type == "ClusterIP":
            yield Problem(f"{path}.type", f"{why}: give it a LoadBalancer")
        elif cluster.kind == "eks" and lb.scheme != "internal":
            yield Problem(
                f"{path}.scheme",
                f"{why}: make its NLB internal (their NetworkPolicy reaches its VPC's addresses "
                "only)",
            )
        if lb.hostname is None:
            yield Problem(
                f"{path}.hostname",
                f"{why}: give the DNS name of its load balancer (its TLS certificate covers it)",
            )
        elif lb.hostname.startswith("*."):
            yield Problem(f"{path}.hostname", "a wildcard is not a name to reach the gateway by")
        elif (
            lb.tls is not None
            and lb.tls.cert_manager is not None
            and lb.hostname not in lb.tls.cert_manager.dns_names
        ):
            yield Problem(
                f"{path}.tls.certManager.dnsNames",
                f"add {lb.hostname} (loadBalancer.hostname): {why} by that name",
            )
        if cluster.kind == "existing" and lb.address is None:
            yield Problem(
                f"{path}.address",
                f"{why}: give its fixed address (their NetworkPolicy lets them reach it only)",
            )


def _node_tiers(settings: Settings) -> Iterator[Problem]:
    for cluster_name, cluster in settings.clusters.items():
        named: dict[str, str] = {}
        for tier_name, tier in cluster.tiers.items():
            path = f"clusters.{cluster_name}.tiers.{tier_name}"
            if cluster.kind == "eks":
                yield from _eks_tier(path, tier)
            else:
                yield from _onprem_tier(path, cluster, tier)
            for index, node in enumerate(tier.node_names):
                if node in named:
                    yield Problem(
                        f"{path}.nodeNames[{index}]", f"{node} is already in tier {named[node]}"
                    )
                named[node] = tier_name


def _eks_tier(path: str, tier: Tier) -> Iterator[Problem]:
    if not tier.instance_types:
        yield Problem(f"{path}.instanceTypes", "an eks tier needs instanceTypes, e.g. [m6i.xlarge]")
    if tier.node_names:
        yield Problem(f"{path}.nodeNames", "nodeNames are for on-prem tiers; eks nodes come and go")
    desired = tier.desired_nodes
    if desired is not None and not tier.nodes.min <= desired <= tier.nodes.max:
        yield Problem(
            f"{path}.desiredNodes",
            f"{desired} is outside nodes {{min: {tier.nodes.min}, max: {tier.nodes.max}}}",
        )
    for index, instance_type in enumerate(tier.instance_types):
        yield from _instance_type(path, index, instance_type, tier)


def _onprem_tier(path: str, cluster: Cluster, tier: Tier) -> Iterator[Problem]:
    for key, value in (
        ("instanceTypes", tier.instance_types),
        ("desiredNodes", tier.desired_nodes),
    ):
        if value is not None and value != []:
            yield Problem(f"{path}.{key}", f"{key} is for eks tiers; this cluster is existing")
    if cluster.onprem is None:
        if tier.node_names:
            yield Problem(
                f"{path}.nodeNames",
                "nodes are labelled by name only with onprem settings on the cluster",
            )
        return
    if not tier.node_names:
        yield Problem(f"{path}.nodeNames", "an on-prem tier needs nodeNames: the nodes forming it")
    elif len(tier.node_names) != tier.nodes.max:
        yield Problem(
            f"{path}.nodeNames",
            f"{len(tier.node_names)} nodes named, but nodes.max is {tier.nodes.max}",
        )


def _instance_type(path: str, index: int, instance_type: str, tier: Tier) -> Iterator[Problem]:
    type_path = f"{path}.instanceTypes[{index}]"
    family = instance_family(instance_type)
    facts = INSTANCE_FAMILIES.get(family)
    if facts is None:
        if tier.kind == "gpu":
            gpu_families = sorted(f for f, i in INSTANCE_FAMILIES.items() if i.gpu)
            yield Problem(
                type_path,
                f"unknown instance family {family!r} for a gpu tier; known: {gpu_families}",
            )
        return
    if ISA_LEVELS.index(tier.isa) > ISA_LEVELS.index(facts.isa):
        yield Problem(
            f"{path}.isa",
            f"{tier.isa}, but {instance_type} is {facts.isa} ({facts.cpu}); "
            f"set isa: {facts.isa} or a newer instance family",
        )
    yield from _instance_gpu(path, type_path, instance_type, tier, facts)


def _instance_gpu(
    path: str, type_path: str, instance_type: str, tier: Tier, facts: InstanceFamily
) -> Iterator[Problem]:
    if tier.kind == "cpu" and facts.gpu:
        yield Problem(type_path, f"{instance_type} has {facts.gpu} GPUs: use it in a gpu tier")
    if tier.kind != "gpu" or tier.gpu is None:
        return
    if facts.gpu is None:
        yield Problem(type_path, f"{instance_type} has no GPU, but this is a gpu tier")
    elif facts.gpu != tier.gpu.type:
        yield Problem(type_path, f"{instance_type} has {facts.gpu}, not gpu.type {tier.gpu.type}")
    elif tier.gpu.memory_gib > facts.gpu_memory_gib:
        yield Problem(
            f"{path}.gpu.memoryGib",
            f"{tier.gpu.memory_gib:g} exceeds the {facts.gpu_memory_gib:g} GiB of one "
            f"{facts.gpu} ({instance_type})",
        )


def _built_names(settings: Settings, stack: str | None) -> Iterator[Problem]:
    """Each name the program builds from settings that its object would refuse
    (llamafleet.settings.names), one line per key path."""
    found: dict[str, list[str]] = {}
    for path, message in _name_problems(settings, stack):
        found.setdefault(path, []).append(message)
    for path, messages in found.items():
        yield Problem(path, "; ".join(dict.fromkeys(messages)))


def _name_problems(settings: Settings, stack: str | None) -> Iterator[tuple[str, str]]:
    for team in settings.tenants:
        yield from _label(f"tenants.{team}", "namespace", team_namespace(team), DNS_1123_LABEL)
    eks_clusters = {n for n, c in settings.clusters.items() if c.kind == "eks"}
    store = settings.model_store
    # As the program: a fetcher gets its own IAM role on EKS where the store is AWS S3 and no
    # key pair is given.
    pod_roles = (
        eks_clusters if store.endpoint_url is None and store.credentials_secret is None else set()
    )
    for placement in placements(settings):
        yield from _placement_names(placement, pod_roles)
    for cluster in sorted(eks_clusters):
        name = eks_cluster_name(stack or "", cluster)
        if stack is not None and len(name) > EKS_CLUSTER_MAX:
            yield (
                f"clusters.{cluster}",
                f"EKS cluster name {name!r} (<stack>-<cluster>) is {len(name)} characters; "
                f"EKS allows {EKS_CLUSTER_MAX}",
            )
        for tier in settings.clusters[cluster].tiers:
            yield from _node_tier(cluster, tier)


def _placement_names(placement: Placement, pod_roles: set[str]) -> Iterator[tuple[str, str]]:
    path = f"models.{placement.model_name}"
    name = instance_name(placement.model_name, placement.tier_name)
    yield from _label(path, f"Service on tier {placement.tier_name}", name, DNS_1035_LABEL)
    if placement.cluster_name in pod_roles:
        role = pod_role_name(placement.cluster_name, placement.team, name)
        yield from _autonamed(path, f"IAM role of team {placement.team}", role, IAM_ROLE_MAX)


def _node_tier(cluster: str, tier: str) -> Iterator[tuple[str, str]]:
    path = f"clusters.{cluster}.tiers.{tier}"
    base = node_tier_name(cluster, tier)
    yield from _autonamed(path, "node IAM role", base + NODE_ROLE_SUFFIX, IAM_ROLE_MAX)
    yield from _autonamed(path, "EKS node group", base + NODE_GROUP_SUFFIX, NODE_GROUP_MAX)


def _label(path: str, what: str, name: str, rule: re.Pattern[str]) -> Iterator[tuple[str, str]]:
    if len(name) > DNS_LABEL_MAX:
        yield path, f"{what} name {name!r} is {len(name)} characters; the limit is {DNS_LABEL_MAX}"
    elif not rule.match(name):
        start = "a letter" if rule is DNS_1035_LABEL else "a letter or digit"
        yield path, f"{what} name {name!r} must start with {start} (a DNS label)"


def _autonamed(path: str, what: str, name: str, limit: int) -> Iterator[tuple[str, str]]:
    full = len(name) + AUTONAME_SUFFIX_LENGTH
    if full > limit:
        yield (
            path,
            f"{what} {name!r} plus Pulumi's {AUTONAME_SUFFIX_LENGTH}-character suffix is {full} "
            f"characters; AWS allows {limit}: shorten the names it is made of",
        )
