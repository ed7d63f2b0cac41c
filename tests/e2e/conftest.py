"""Fixtures for the end-to-end tests: the real engine and a real local control plane.

The binaries come from scripts/bootstrap-engine; when they are missing every e2e test skips and
says so (CI runs the bootstrap first, so there they run). The control plane each session starts
is its own: a temporary data directory and ports of its own, torn down at the end.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from e2e_support import (
    BIN,
    CLUSTER_BINARIES,
    ENGINE_BINARIES,
    SCRIPTS,
    TEST_API_PORT,
    TEST_ETCD_PORT,
    TEST_TIERS,
    Cluster,
    missing_binaries,
)

from infra.engine import missing_engine_binaries


def _need(names: tuple[str, ...]) -> Path:
    missing = missing_binaries(names)
    if missing:
        pytest.skip(
            f"engine not built ({', '.join(missing)} missing in {BIN}): "
            "run scripts/bootstrap-engine"
        )
    return BIN


@pytest.fixture(scope="session")
def cluster_bin() -> Path:
    """The control plane's binaries (skips the test when scripts/bootstrap-engine has not run)."""
    return _need(CLUSTER_BINARIES)


@pytest.fixture(scope="session")
def engine_bin(cluster_bin: Path) -> Path:
    """The Pulumi CLI, language host and Kubernetes provider (from the bootstrap or PATH), plus
    the control plane's binaries."""
    missing = missing_engine_binaries(ENGINE_BINARIES)
    if missing:
        pytest.skip(f"Pulumi engine incomplete: {'; '.join(missing)}")
    return BIN


def _run(argv: list[str], env: dict[str, str], timeout: float) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        argv, env=env, capture_output=True, text=True, check=False, timeout=timeout
    )


@pytest.fixture(scope="session")
def local_cluster(cluster_bin: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    """A fresh control plane with TEST_TIERS' fake nodes, stopped and deleted at the end."""
    if shutil.which("openssl") is None:
        pytest.skip("openssl is needed to make the control plane's certificates")
    data = tmp_path_factory.mktemp("local-cluster")
    tiers = data / "tiers.json"
    tiers.write_text(json.dumps(TEST_TIERS))
    env = {
        **os.environ,
        "LLAMAFLEET_LOCAL_DIR": str(data / "state"),
        "LLAMAFLEET_APISERVER_PORT": str(TEST_API_PORT),
        "LLAMAFLEET_ETCD_PORT": str(TEST_ETCD_PORT),
    }
    script = str(SCRIPTS / "local-cluster")
    up = _run([script, "up", str(tiers)], env, timeout=300)
    try:
        assert up.returncode == 0, f"local-cluster up failed:\n{up.stderr}\n{up.stdout}"
        yield Cluster(kubeconfig=Path(up.stdout.strip().splitlines()[-1]), data_dir=data, env=env)
    finally:
        _run([script, "down", "--purge"], env, timeout=120)
