"""Fixtures for the ModelStore and ModelSync components: small GGUF files written with the
`gguf` package, and moto_server on loopback."""

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
import gguf
import numpy as np
import pytest

from modelsync.store import forget_credentials

# Distinctive, so a leak into outputs, state or the pickled provider is easy to spot.
ACCESS_KEY = "AKIALLAMAFLEETLEAK01"
SECRET_KEY = "llamafleet-secret-that-must-not-leak"


# --- GGUF files ----------------------------------------------------------------------------


def write_gguf(path: Path, fill: float = 1.0, elements: int = 1024) -> Path:
    """A small valid GGUF (a tiny llama); `fill` changes the content, not the size."""
    path.parent.mkdir(parents=True, exist_ok=True)
    writer = gguf.GGUFWriter(path, arch="llama")
    writer.add_context_length(4096)
    writer.add_block_count(4)
    writer.add_embedding_length(256)
    writer.add_head_count(8)
    writer.add_head_count_kv(2)
    writer.add_file_type(15)
    writer.add_tensor("weights", np.full(elements, fill, dtype=np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


# --- AWS environment and S3 on loopback ----------------------------------------------------------


@pytest.fixture(autouse=True)
def aws_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Credentials only in the environment (the standard chain); a fresh hash cache per test."""
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", ACCESS_KEY)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", SECRET_KEY)
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    monkeypatch.delenv("AWS_SESSION_TOKEN", raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", os.devnull)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", os.devnull)
    monkeypatch.setenv("MODELSYNC_CACHE_DIR", str(tmp_path / "hash-cache"))
    # Sessions cache the credentials they first resolved: other tests ran with other keys.
    forget_credentials()
    boto3.DEFAULT_SESSION = None


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _wait_until_serving(url: str, process: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"moto_server exited with {process.returncode}")
        try:
            urllib.request.urlopen(url, timeout=1).close()
            return
        except urllib.error.HTTPError:
            return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"moto_server did not start serving {url}")


@pytest.fixture(scope="session")
def moto_endpoint() -> Iterator[str]:
    venv_bin = str(Path(sys.executable).parent)
    binary = shutil.which("moto_server", path=venv_bin) or shutil.which("moto_server")
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
        _wait_until_serving(url, process)
        yield url
    finally:
        process.terminate()
        process.wait(10)


@pytest.fixture
def bucket(moto_endpoint: str) -> str:
    name = f"models-{uuid.uuid4().hex[:12]}"
    boto3.client("s3", endpoint_url=moto_endpoint).create_bucket(Bucket=name)
    return name


class OpenWatch:
    """Records files opened under a folder, through Python's audit hooks."""

    def __init__(self) -> None:
        self.folder: str | None = None
        self.opened: list[str] = []

    def hook(self, event: str, args: tuple[object, ...]) -> None:
        if event == "open" and self.folder is not None and args:
            target = args[0]
            if isinstance(target, str | bytes | os.PathLike):
                text = os.path.abspath(os.fsdecode(target))  # type: ignore[arg-type]
                if text.startswith(self.folder):
                    self.opened.append(text)


_WATCH = OpenWatch()
sys.addaudithook(_WATCH.hook)


@pytest.fixture
def watch_opens() -> Iterator[Callable[[Path], list[str]]]:
    """`watch(folder)` starts recording opens under `folder` and returns the live list."""

    def watch(folder: Path) -> list[str]:
        _WATCH.opened = []
        _WATCH.folder = str(folder.resolve()) + os.sep
        return _WATCH.opened

    yield watch
    _WATCH.folder = None
