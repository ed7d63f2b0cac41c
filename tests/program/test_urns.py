"""Live state survives refactors: every stack declares the URNs the tree before issue 13 did
(tests/program/urns/<stack>.txt, rendered at 4291b03), or a resource that carries the old URN as
an alias. A moved module, a renamed component or a changed parent shows up here, under the
mocks, before it replaces anything in a real stack."""

from __future__ import annotations

from pathlib import Path

from llamafleet.command.render import Rendered

URNS = Path(__file__).parent / "urns"


def test_every_urn_of_the_tree_before_is_declared_or_aliased(
    stack: str, rendered: Rendered
) -> None:
    before = set((URNS / f"{stack}.txt").read_text().split())
    now = {d.urn for d in rendered.declared}
    aliased = {alias for d in rendered.declared for alias in d.aliases}
    assert sorted(before - now - aliased) == []


def test_new_urns_are_listed(stack: str, rendered: Rendered) -> None:
    """A resource added on purpose is added to the list too, so a review sees it."""
    before = set((URNS / f"{stack}.txt").read_text().split())
    assert sorted({d.urn for d in rendered.declared} - before) == []
