"""Fixtures for the ModelStore and ModelSync components: small GGUF files written with the
`gguf` package, and moto_server on loopback."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import boto3
import pytest
from support.loopback import OPENS, moto_server, use_credentials
from support.tiny_llama_gguf import write_gguf

# Distinctive, so a leak into outputs, state or the pickled provider is easy to spot.
ACCESS_KEY = "AKIALLAMAFLEETLEAK01"
SECRET_KEY = "llamafleet-secret-that-must-not-leak"


# --- GGUF files: tests import write_gguf from here ------------------------------------------

__all__ = ["ACCESS_KEY", "SECRET_KEY", "write_gguf"]


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
