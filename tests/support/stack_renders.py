"""Every stack file, rendered once per test session under Pulumi's mock monitor."""

from __future__ import annotations

import functools
from typing import Any

from llamafleet.command.render import Rendered, render
from llamafleet.settings.load import STACKS_DIR

STACKS = sorted(
    p.name.removeprefix("Pulumi.").removesuffix(".yaml") for p in STACKS_DIR.glob("Pulumi.*.yaml")
)


@functools.cache
def rendered_stack(stack: str) -> Rendered:
    """The stack's render, shared by every test of the session (do not mutate it)."""
    return render(stack)


# The gateway's namespace in every stack (`serving.gatewayNamespace`'s default).
GATEWAY_NAMESPACE = "llamafleet-gateway"


def model_objects(objects: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The objects that serve models (the teams' namespaces), without the gateway's."""
    return [
        o
        for o in objects
        if o["metadata"].get("namespace") != GATEWAY_NAMESPACE
        and o["metadata"].get("name") != GATEWAY_NAMESPACE
    ]


def gateway_objects(objects: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The gateway's objects: its namespace and what is in it."""
    return [o for o in objects if o not in model_objects(objects)]
