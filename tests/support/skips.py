"""Skips that may happen under CI: what `.ci/run` cannot provide (a GPU, an opt-in long run, a
limit of a peer implementation). Every other skip fails a CI run (tests/conftest.py)."""

from __future__ import annotations

from typing import NoReturn

import pytest

OPTIONAL = "optional: "


def optional_skip(reason: str) -> NoReturn:
    """Skip, saying why; allowed under CI=true."""
    pytest.skip(OPTIONAL + reason)
