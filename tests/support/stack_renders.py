"""Every stack file, rendered once per test session under Pulumi's mock monitor."""

from __future__ import annotations

import functools

from llamafleet.command.render import Rendered, render
from llamafleet.settings.load import STACKS_DIR

STACKS = sorted(
    p.name.removeprefix("Pulumi.").removesuffix(".yaml") for p in STACKS_DIR.glob("Pulumi.*.yaml")
)


@functools.cache
def rendered_stack(stack: str) -> Rendered:
    """The stack's render, shared by every test of the session (do not mutate it)."""
    return render(stack)
