"""Fixtures for the ModelStore and ModelSync components: small GGUF files written with the
`gguf` package, and moto_server on loopback."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import boto3
import gguf
import numpy as np
import pytest
from loopback import OPENS, moto_server, use_credentials

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
    use_credentials(monkeypatch, ACCESS_KEY, SECRET_KEY)
    monkeypatch.setenv("MODELSYNC_CACHE_DIR", str(tmp_path / "hash-cache"))


@pytest.fixture(scope="session")
def moto_endpoint() -> Iterator[str]:
    with moto_server() as url:
        yield url


@pytest.fixture
def bucket(moto_endpoint: str) -> str:
    name = f"models-{uuid.uuid4().hex[:12]}"
    boto3.client("s3", endpoint_url=moto_endpoint).create_bucket(Bucket=name)
    return name


@pytest.fixture
def watch_opens() -> Iterator[Callable[[Path], list[str]]]:
    """`watch(folder)` starts recording opens under `folder` and returns the live list."""
    yield OPENS.watch
    OPENS.stop()
