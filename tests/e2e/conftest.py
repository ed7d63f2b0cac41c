"""Fixtures for the end-to-end tests: the real engine, a real local control plane and S3 on
loopback.

The binaries come from scripts/bootstrap-engine (`make test` runs it first); where they are
missing every e2e test skips and says so, which fails a CI run (tests/conftest.py). The control
plane each session starts is its own: a temporary data directory and ports of its own, torn down
at the end.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from e2e_support import (
    BIN,
    CLUSTER_BINARIES,
    E2E_STACK,
    ENGINE_BINARIES,
    REPO,
    SCRIPTS,
    TEST_API_PORT,
    TEST_ETCD_PORT,
    Cluster,
    Project,
    ProjectFactory,
    e2e_config,
    tiers_of,
)
from support.loopback import moto_server

S3_ACCESS_KEY = "e2e-access-key"
S3_SECRET_KEY = "e2e-secret-key"  # moto takes any pair


def _need(names: tuple[str, ...]) -> Path:
    missing = [name for name in names if not (BIN / name).is_file()]
    if missing:
        pytest.skip(f"not built: {', '.join(missing)} in {BIN}: run scripts/bootstrap-engine")
    return BIN


@pytest.fixture(scope="session")
def cluster_bin() -> Path:
    """The control plane's binaries."""
    return _need(CLUSTER_BINARIES)


@pytest.fixture(scope="session")
def engine_bin(cluster_bin: Path) -> Path:
    """The Pulumi CLI and its plugins, plus the control plane's binaries."""
    return _need(ENGINE_BINARIES)


@pytest.fixture(scope="session")
def store_endpoint() -> Iterator[str]:
    with moto_server() as url:
        yield url


@pytest.fixture(scope="session")
def e2e_models(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("e2e-models")


@pytest.fixture(scope="session")
def test_tiers(
    tmp_path_factory: pytest.TempPathFactory, e2e_models: Path, store_endpoint: str
) -> list[dict[str, Any]]:
    """The e2e stack's tiers as fake nodes: two CPU tiers and a tainted GPU tier."""
    scratch = tmp_path_factory.mktemp("tiers")
    return tiers_of(e2e_config(e2e_models, store_endpoint), scratch / "Pulumi.e2e.yaml")


def _run(argv: list[str], env: dict[str, str], timeout: float) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        argv, env=env, capture_output=True, text=True, check=False, timeout=timeout
    )


@pytest.fixture(scope="session")
def local_cluster(
    cluster_bin: Path, tmp_path_factory: pytest.TempPathFactory, test_tiers: list[dict[str, Any]]
) -> Iterator[Cluster]:
    """A fresh control plane with the e2e tiers' fake nodes, stopped and deleted at the end."""
    if shutil.which("openssl") is None:
        pytest.skip("openssl is needed to make the control plane's certificates")
    data = tmp_path_factory.mktemp("local-cluster")
    tiers = data / "tiers.json"
    tiers.write_text(json.dumps(test_tiers))
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


@pytest.fixture(scope="module")
def make_project(
    engine_bin: Path,
    local_cluster: Cluster,
    store_endpoint: str,
    tmp_path_factory: pytest.TempPathFactory,
) -> ProjectFactory:
    """`make(stack, config)`: a project directory with the repository's Pulumi.yaml and the stack
    file, a file backend and passphrase of its own, the test cluster and the test store."""

    def make(stack: str, config: dict[str, Any]) -> Project:
        work = tmp_path_factory.mktemp(f"project-{stack}")
        (work / "stacks").mkdir()
        settings = yaml.safe_load((REPO / "Pulumi.yaml").read_text())
        settings["main"] = str(
            REPO / "llamafleet" / "program"
        )  # the CLI checks it exists, even run inline
        (work / "Pulumi.yaml").write_text(yaml.safe_dump(settings))
        (work / ".venv").symlink_to(REPO / ".venv")
        state = work / ".state"
        state.mkdir()
        (work / ".tmp").mkdir()
        env = {
            **os.environ,
            "TMPDIR": str(work / ".tmp"),
            "KUBECONFIG": str(local_cluster.kubeconfig),
            "PULUMI_BACKEND_URL": state.as_uri(),
            "PULUMI_CONFIG_PASSPHRASE": f"e2e-{stack}-passphrase",
            "PULUMI_HOME": str(work / ".pulumi-home"),
            "AWS_ACCESS_KEY_ID": S3_ACCESS_KEY,
            "AWS_SECRET_ACCESS_KEY": S3_SECRET_KEY,
            "AWS_DEFAULT_REGION": "us-east-1",
            "MODELSYNC_CACHE_DIR": str(work / ".hash-cache"),
        }
        env.pop("PULUMI_CONFIG_PASSPHRASE_FILE", None)
        project = Project(work, stack, env)
        (work / "stacks" / f"Pulumi.{stack}.yaml").write_text(
            yaml.safe_dump({"config": config}, sort_keys=False)
        )
        return project

    return make


@pytest.fixture(scope="module")
def e2e_project(
    make_project: ProjectFactory, e2e_models: Path, store_endpoint: str, local_cluster: Cluster
) -> Project:
    config = e2e_config(e2e_models, store_endpoint)
    # Named in the settings, as on-prem stacks do: the Kubernetes provider then gets it as config
    # (and writes a copy for Helm into TMPDIR, which the engine must not leave behind).
    config["llamafleet:clusters"]["local"]["kubeconfig"] = {"path": str(local_cluster.kubeconfig)}
    return make_project(E2E_STACK, config)
