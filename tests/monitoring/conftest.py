"""promtool and node_exporter, as scripts/bootstrap-engine builds them (`make test` builds them
first: its test-tools target)."""

from __future__ import annotations

from pathlib import Path

import pytest

from llamafleet.command.engine import engine_bin_dir


def _built(name: str, piece: str) -> Path:
    path = engine_bin_dir() / name
    if not path.is_file():
        pytest.skip(f"not built: {path}: run scripts/bootstrap-engine {piece}")
    return path


@pytest.fixture(scope="session")
def promtool() -> Path:
    return _built("promtool", "prometheus")


@pytest.fixture(scope="session")
def node_exporter() -> Path:
    return _built("node_exporter", "node-exporter")
