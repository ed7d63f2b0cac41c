"""Every stack file, rendered once per test session under Pulumi's mock monitor."""

from __future__ import annotations

import functools
from pathlib import Path

from infra.render import Rendered, render

STACKS_DIR = Path(__file__).resolve().parent.parent / "stacks"
STACKS = sorted(
    p.name.removeprefix("Pulumi.").removesuffix(".yaml") for p in STACKS_DIR.glob("Pulumi.*.yaml")
)


@functools.cache
def rendered_stack(stack: str) -> Rendered:
    return render(stack)
