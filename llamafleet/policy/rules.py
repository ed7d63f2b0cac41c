"""Policy rules over rendered Kubernetes objects: plain functions, unit-tested.

Object rules take one object and yield what is wrong with it; fleet rules take every object a
stack renders. `violations` runs them all. The CrossGuard pack (llamafleet/policy/__main__.py) runs
the object rules on `pulumi preview`/`up` where the CLI can load it; `llamafleet preview` and `up`
run `violations` over what the engine registers (llamafleet/policy/registered.py).

A value a preview cannot show (unknown until the update, or a secret) raises NotKnownYet where a
rule reads it; `violations` then reports that rule as failing for that object: fail closed.
`findings` keeps those apart from the rest, so `up` can check such an object again as the engine
registers it, with the value known.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable, Iterator
from typing import Any

K8sObject = dict[str, Any]
ObjectRule = Callable[[K8sObject], Iterator[str]]

POD_TEMPLATE_KINDS = {"Deployment", "StatefulSet", "DaemonSet", "ReplicaSet", "Job"}


class NotKnownYet(Exception):
    """A rule read a value the preview does not show; the message says why (unknown until the
    update, or a secret)."""


def pod_spec(obj: K8sObject) -> dict[str, Any] | None:
    """The pod spec of a Pod, a pod-template workload (POD_TEMPLATE_KINDS) or a CronJob.

    None for any other kind, or when the object has no pod template.
    """
    kind = obj.get("kind")
    spec = obj.get("spec") or {}
    if kind == "Pod":
        return spec
    if kind in POD_TEMPLATE_KINDS:
        return spec.get("template", {}).get("spec")
    if kind == "CronJob":
        return spec.get("jobTemplate", {}).get("spec", {}).get("template", {}).get("spec")
    return None


def _containers(spec: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
    for field in ("initContainers", "containers"):
        for container in spec.get(field) or []:
            yield f"{field[:-1]} {container.get('name')}", container


def _each_container(check: Callable[[dict[str, Any], dict[str, Any]], str | None]) -> ObjectRule:
    """An object rule from a per-container check (given the pod spec and the container)."""

    def rule(obj: K8sObject) -> Iterator[str]:
        spec = pod_spec(obj)
        if spec is None:
            return
        for label, container in _containers(spec):
            problem = check(spec, container)
            if problem:
                yield f"{label}: {problem}"

    rule.__name__ = check.__name__
    rule.__doc__ = check.__doc__
    return rule


def _effective(spec: dict[str, Any], container: dict[str, Any], key: str) -> Any:
    own = (container.get("securityContext") or {}).get(key)
    return own if own is not None else (spec.get("securityContext") or {}).get(key)


@_each_container
def runs_as_non_root(spec: dict[str, Any], container: dict[str, Any]) -> str | None:
    """Containers run as a non-root user."""
    if _effective(spec, container, "runAsNonRoot") is not True:
        return "runAsNonRoot is not true"
    if _effective(spec, container, "runAsUser") == 0:
        return "runAsUser is 0"
    return None


@_each_container
def read_only_root_filesystem(_: dict[str, Any], container: dict[str, Any]) -> str | None:
    """Container root filesystems are read-only."""
    if (container.get("securityContext") or {}).get("readOnlyRootFilesystem") is not True:
        return "readOnlyRootFilesystem is not true"
    return None


@_each_container
def no_privilege_escalation(_: dict[str, Any], container: dict[str, Any]) -> str | None:
    """No container may gain privileges."""
    context = container.get("securityContext") or {}
    if context.get("allowPrivilegeEscalation") is not False:
        return "allowPrivilegeEscalation is not false"
    if context.get("privileged"):
        return "privileged"
    return None


@_each_container
def drops_all_capabilities(_: dict[str, Any], container: dict[str, Any]) -> str | None:
    """Containers drop every Linux capability and add none."""
    capabilities = (container.get("securityContext") or {}).get("capabilities") or {}
    if "ALL" not in (capabilities.get("drop") or []):
        return "capabilities.drop lacks ALL"
    if capabilities.get("add"):
        return f"adds capabilities {capabilities['add']}"
    return None


@_each_container
def seccomp_runtime_default(spec: dict[str, Any], container: dict[str, Any]) -> str | None:
    """Containers run under the runtime's default seccomp profile (or a stricter local one)."""
    profile = _effective(spec, container, "seccompProfile") or {}
    if profile.get("type") not in ("RuntimeDefault", "Localhost"):
        return "seccompProfile is not RuntimeDefault"
    return None


@_each_container
def requests_and_limits(_: dict[str, Any], container: dict[str, Any]) -> str | None:
    """Every container requests and limits CPU and memory."""
    resources = container.get("resources") or {}
    for kind in ("requests", "limits"):
        missing = [r for r in ("cpu", "memory") if r not in (resources.get(kind) or {})]
        if missing:
            return f"no {kind} for {', '.join(missing)}"
    return None


@_each_container
def image_pinned_by_digest(_: dict[str, Any], container: dict[str, Any]) -> str | None:
    """Images are referenced by digest, so what runs is what was reviewed."""
    if "@sha256:" not in str(container.get("image", "")):
        return f"image {container.get('image')!r} is not pinned by digest"
    return None


def probes(obj: K8sObject) -> Iterator[str]:
    """Serving containers have readiness and liveness probes (init containers run to completion)."""
    spec = pod_spec(obj)
    for container in (spec or {}).get("containers") or []:
        for probe in ("readinessProbe", "livenessProbe"):
            if probe not in container:
                yield f"container {container.get('name')}: no {probe}"


def no_host_access(obj: K8sObject) -> Iterator[str]:
    """Pods share no host namespace and mount no host path."""
    spec = pod_spec(obj)
    if spec is None:
        return
    for field in ("hostNetwork", "hostPID", "hostIPC"):
        if spec.get(field):
            yield f"{field} is set"
    for volume in spec.get("volumes") or []:
        if "hostPath" in volume:
            yield f"volume {volume.get('name')} is a hostPath"


def no_service_account_token(obj: K8sObject) -> Iterator[str]:
    """Pods don't get an API token they don't use."""
    spec = pod_spec(obj)
    if spec is not None and spec.get("automountServiceAccountToken") is not False:
        yield "automountServiceAccountToken is not false"


OBJECT_RULES: tuple[ObjectRule, ...] = (
    runs_as_non_root,
    read_only_root_filesystem,
    no_privilege_escalation,
    drops_all_capabilities,
    seccomp_runtime_default,
    requests_and_limits,
    image_pinned_by_digest,
    probes,
    no_host_access,
    no_service_account_token,
)


def _labels_match(selector: dict[str, Any], labels: dict[str, str]) -> bool:
    wanted = selector.get("matchLabels") or {}
    return all(labels.get(k) == v for k, v in wanted.items()) and not selector.get(
        "matchExpressions"
    )


def _pod_labels(obj: K8sObject) -> dict[str, str]:
    if obj.get("kind") == "Pod":
        return obj["metadata"].get("labels") or {}
    spec = obj.get("spec") or {}
    template = spec.get("template") or spec.get("jobTemplate", {}).get("spec", {}).get("template")
    return (template or {}).get("metadata", {}).get("labels") or {}


def default_deny_everywhere(objects: list[K8sObject]) -> Iterator[str]:
    """Every namespace with workloads has a default-deny NetworkPolicy for ingress and egress."""
    deny = {
        o["metadata"].get("namespace")
        for o in objects
        if o.get("kind") == "NetworkPolicy"
        and (o.get("spec") or {}).get("podSelector") == {}
        and set((o.get("spec") or {}).get("policyTypes") or []) == {"Ingress", "Egress"}
        and not (o.get("spec") or {}).get("ingress")
        and not (o.get("spec") or {}).get("egress")
    }
    for obj in objects:
        namespace = obj.get("metadata", {}).get("namespace")
        if pod_spec(obj) is not None and namespace not in deny:
            name = obj["metadata"]["name"]
            yield f"{obj['kind']} {namespace}/{name}: namespace has no default-deny"


def workloads_have_network_policy(objects: list[K8sObject]) -> Iterator[str]:
    """Every workload is selected by a NetworkPolicy of its own, beyond the default deny."""
    policies = [o for o in objects if o.get("kind") == "NetworkPolicy"]
    for obj in objects:
        spec = pod_spec(obj)
        if spec is None:
            continue
        namespace = obj["metadata"].get("namespace")
        labels = _pod_labels(obj)
        if not any(
            p["metadata"].get("namespace") == namespace
            and p["spec"].get("podSelector")
            and _labels_match(p["spec"]["podSelector"], labels)
            for p in policies
        ):
            name = obj["metadata"]["name"]
            yield f"{obj['kind']} {namespace}/{name}: no NetworkPolicy selects it"


FLEET_RULES: tuple[Callable[[list[K8sObject]], Iterator[str]], ...] = (
    default_deny_everywhere,
    workloads_have_network_policy,
)


def _where(obj: K8sObject) -> str:
    try:
        meta = obj.get("metadata") or {}
        return f"{obj.get('kind')} {meta.get('namespace', '')}/{meta.get('name')}"
    except NotKnownYet:
        return f"{obj.get('kind')} (its name is not known yet)"


@dataclasses.dataclass
class Findings:
    """What the rules found, one `<rule>: <kind> <namespace>/<name>: <problem>` line each.

    `broken`: the rules that fail on what they read (a fleet rule that needed a value not known
    yet is here too: nothing checks the whole fleet again later). `not_known_yet`: an object rule
    that needed a value not known yet (NotKnownYet); `llamafleet up` checks that object again as
    the engine registers it, when the value is known (registered.RegistrationGate).
    """

    broken: list[str] = dataclasses.field(default_factory=list[str])
    not_known_yet: list[str] = dataclasses.field(default_factory=list[str])

    def lines(self) -> list[str]:
        """Every line, the broken ones first: both fail a preview (fail closed)."""
        return [*self.broken, *self.not_known_yet]


def object_findings(obj: K8sObject, found: Findings | None = None) -> Findings:
    """Every object rule over `obj`, added to `found` (a new Findings by default)."""
    found = Findings() if found is None else found
    for rule in OBJECT_RULES:
        try:
            found.broken.extend(f"{rule.__name__}: {_where(obj)}: {p}" for p in rule(obj))
        except NotKnownYet as unknown:
            found.not_known_yet.append(
                f"{rule.__name__}: {_where(obj)}: cannot be checked: {unknown}"
            )
    return found


def findings(objects: Iterable[K8sObject]) -> Findings:
    """Every object rule over every object, then every fleet rule over all of them."""
    objects = list(objects)
    found = Findings()
    for obj in objects:
        object_findings(obj, found)
    for fleet_rule in FLEET_RULES:
        try:
            found.broken.extend(f"{fleet_rule.__name__}: {p}" for p in fleet_rule(objects))
        except NotKnownYet as unknown:
            found.broken.append(f"{fleet_rule.__name__}: cannot be checked: {unknown}")
    return found


def violations(objects: Iterable[K8sObject]) -> list[str]:
    """Every rule over every object (`findings`), as lines. A rule that needs a value not known
    yet (NotKnownYet) is one line saying so, never a pass."""
    return findings(objects).lines()
