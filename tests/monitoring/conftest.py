"""promtool, as scripts/bootstrap-engine builds it (`make test` builds it first)."""

from __future__ import annotations

from pathlib import Path

import pytest

from llamafleet.command.engine import engine_bin_dir


@pytest.fixture(scope="session")
def promtool() -> Path:
    path = engine_bin_dir() / "promtool"
    if not path.is_file():
        pytest.skip(f"not built: {path}: run scripts/bootstrap-engine prometheus")
    return path
