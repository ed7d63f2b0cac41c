"""The policy rules over what the engine registers: the Kubernetes objects of a preview.

The engine built here cannot load a CrossGuard pack (it runs the program inline and has no
Python language host to start the pack's analyzer), so `llamafleet preview` and `up` collect the
inputs of every Kubernetes resource from the preview's engine events, steps that change nothing
included, and run `rules.violations` over them: the same rule functions the pack and the render
tests run.

In those events a value not known until the update is the engine's unknown marker
(`pulumi.runtime.rpc.UNKNOWN`) and a secret is a signature object (`rpc.is_rpc_secret`) whose
value is not shown. Both become a `Hidden` value, which raises `rules.NotKnownYet` when a rule
compares, tests or iterates it, so a rule that needs it fails closed while a rule that never
reads it passes.

During `up`, `RegistrationGate` runs the object rules again on each Kubernetes object as the
engine registers it (a stack transform, `pulumi.runtime.register_resource_transform`): its inputs
are known then, as the engine waits for the resources they come from. An object that breaks a
rule is refused before it is created or changed, so what the preview could not check (an image
built by the same update) is checked before it reaches the cluster.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Final, NoReturn

import pulumi
from pulumi.output import Unknown
from pulumi.runtime.rpc import UNKNOWN, is_rpc_secret, unwrap_rpc_secret

from llamafleet.policy.rules import Findings, K8sObject, NotKnownYet, findings, object_findings

UNKNOWN_UNTIL_UPDATE: Final = "not known until the update"
HIDDEN_BY_SECRECY: Final = "a secret, which the preview does not show"
KUBERNETES: Final = "kubernetes:"


class Hidden:
    """A value the preview does not show. Its repr says why; anything a rule decides on
    (equality, truth, membership, iteration, lookup, hashing, its text) raises NotKnownYet."""

    def __init__(self, path: str, why: str) -> None:
        self.path = path
        self.why = why

    def _refuse(self, *_: object) -> NoReturn:
        raise NotKnownYet(f"{self.path} is {self.why}")

    __eq__ = __ne__ = __lt__ = __le__ = __gt__ = __ge__ = _refuse  # pyright: ignore[reportAssignmentType]
    __bool__ = __contains__ = __iter__ = __len__ = __getitem__ = __hash__ = _refuse  # pyright: ignore[reportAssignmentType]
    __str__ = __format__ = _refuse  # pyright: ignore[reportAssignmentType]
    get = keys = items = values = startswith = endswith = _refuse

    def __repr__(self) -> str:
        return f"<{self.path}: {self.why}>"


def _shown(value: Any, path: str) -> Any:
    """`value` from an event, with what the preview hides made Hidden."""
    if (isinstance(value, str) and value == UNKNOWN) or isinstance(value, Unknown | pulumi.Output):
        return Hidden(path, UNKNOWN_UNTIL_UPDATE)
    if is_rpc_secret(value):
        return Hidden(path, HIDDEN_BY_SECRECY)
    if isinstance(value, Mapping):
        items: Mapping[str, Any] = value
        return {key: _shown(item, f"{path}.{key}") for key, item in items.items()}
    if isinstance(value, list):
        elements: list[Any] = value
        return [_shown(item, f"{path}[{i}]") for i, item in enumerate(elements)]
    return value


def kubernetes_object(type_token: str, inputs: Mapping[str, Any]) -> K8sObject | None:
    """The Kubernetes object a resource of `type_token` registers with `inputs` (its
    `apiVersion`, `kind`, `metadata`, `spec`...); None for any other resource (providers,
    dynamic resources, Helm releases, whose inputs are no object)."""
    if not type_token.startswith(KUBERNETES) or not isinstance(inputs.get("kind"), str):
        return None
    shown = _shown(inputs, str(inputs["kind"]))
    assert isinstance(shown, dict)
    return shown


@dataclass
class RegisteredObjects:
    """The Kubernetes objects of one preview, as its engine events show them."""

    objects: dict[str, K8sObject] = field(default_factory=dict[str, K8sObject])

    def add(self, urn: str, type_token: str, inputs: Mapping[str, Any] | None) -> None:
        """Record the resource `urn` (a step of any kind: create, update, same...) unless it is
        deleted (no `inputs`) or no Kubernetes object."""
        obj = None if inputs is None else kubernetes_object(type_token, inputs)
        if obj is not None:
            self.objects[urn] = obj

    def findings(self) -> Findings:
        """`rules.findings` over the recorded objects (one line each, fail closed)."""
        return findings(self.objects.values())


class RefusedByPolicy(Exception):
    """A Kubernetes object the registration gate refused; the message is its rules' lines."""


REDACTED: Final = "[secret]"


def _revealed(value: Any, secret_texts: list[str], inside_secret: bool = False) -> Any:
    """`value` as a transform gets it, with each secret's value unwrapped (the gate runs in the
    program's own process, which holds them anyway); every text inside a secret is added to
    `secret_texts`, so the lines can leave it out. The SDK marks a whole dict or list secret
    when one value in it is (pulumi/runtime/rpc.py, deserialize_property), so this can be more
    than the secret itself: only the lines lose detail, never the check."""
    if is_rpc_secret(value):
        return _revealed(unwrap_rpc_secret(value), secret_texts, inside_secret=True)
    if isinstance(value, Mapping):
        items: Mapping[str, Any] = value
        return {k: _revealed(v, secret_texts, inside_secret) for k, v in items.items()}
    if isinstance(value, list):
        elements: list[Any] = value
        return [_revealed(v, secret_texts, inside_secret) for v in elements]
    if inside_secret and isinstance(value, str) and value:
        secret_texts.append(value)
    return value


def _redacted(line: str, secret_texts: list[str]) -> str:
    for text in sorted(set(secret_texts), key=len, reverse=True):
        line = line.replace(text, REDACTED)
    return line


@dataclass(eq=False)  # hashed by identity: the SDK keeps each transform as a dict key
class RegistrationGate:
    """The object rules on each Kubernetes object as `up` registers it: a resource transform
    (`pulumi.runtime.register_resource_transform`) that changes nothing and raises
    RefusedByPolicy for an object that breaks a rule, so the engine never sends it to the
    cluster. `refused` keeps each line; `checked` counts the objects seen.

    What a transform gets during an update: values known (the engine waited for the resources
    they come from); a secret as the SDK's secret wrapper, checked by its value, which no line
    shows; a value the update itself left unknown as absent (the SDK drops it, as the provider
    does). A rule that fails on the shape it gets (a None in a list) refuses the object too,
    with its error: fail closed.
    """

    refused: list[str] = field(default_factory=list[str])
    checked: int = 0

    def __call__(self, args: pulumi.ResourceTransformArgs) -> None:
        """Check the resource `args` registers; None leaves its inputs and options as they are.

        Raises:
            RefusedByPolicy: a Kubernetes object breaks a rule or cannot be checked.
        """
        secret_texts: list[str] = []
        revealed = _revealed(dict(args.props), secret_texts)
        obj = kubernetes_object(args.type_, revealed)
        if obj is None:
            return
        self.checked += 1
        try:
            problems = object_findings(obj).lines()
        except Exception as exc:  # any rule's failure refuses the object: fail closed
            problems = [f"{type(exc).__name__} in the rules: cannot be checked: {exc}"]
        problems = [_redacted(line, secret_texts) for line in problems]
        if problems:
            self.refused.extend(problems)
            raise RefusedByPolicy("; ".join(problems))
