"""Shared fixtures: every stack file, rendered once per session (tests/stack_renders.py)."""

from __future__ import annotations

import pytest
from stack_renders import STACKS, rendered_stack

from infra.render import Rendered


@pytest.fixture(params=STACKS)
def stack(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def rendered(stack: str) -> Rendered:
    return rendered_stack(stack)
