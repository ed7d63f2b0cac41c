"""A split model end to end: the 270M test model split by llama.cpp's own `gguf` writer into
three shards, synced as one model, fetched by the init container's rendered command (every shard
pinned, each verified) and served by the pinned llama-server from the rendered argv
(../shared/cases/c01: llama-server answers /health 200 from the fetched shards)."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
import yaml
from llama_server import REPO, LlamaServer, localize_argv
from support.loopback import free_port, moto_server

from llamafleet.command.render import render
from llamafleet.components.server_args import API_KEY_FILE
from llamafleet.settings.load import stack_file

pytestmark = [pytest.mark.image, pytest.mark.s3]
SHARDS = 3


def split_with_gguf_writer(model: Path, out: Path) -> list[Path]:
    """`model` rewritten as SHARDS shards by gguf-py's writer (its split support names and keys
    them as llama-gguf-split does), metadata copied by gguf-py's own copy routine."""
    import gguf  # noqa: PLC0415
    from gguf.scripts.gguf_new_metadata import copy_with_new_metadata  # noqa: PLC0415

    reader = gguf.GGUFReader(model)
    architecture = reader.fields[gguf.Keys.General.ARCHITECTURE].contents()
    per_shard = -(-len(reader.tensors) // SHARDS)
    out.mkdir(parents=True, exist_ok=True)
    writer = gguf.GGUFWriter(out / "gemma3-270m.gguf", architecture, split_max_tensors=per_shard)
    copy_with_new_metadata(reader, writer, {}, [])
    return sorted(out.glob(f"gemma3-270m-*-of-{SHARDS:05d}.gguf"))


def modelsync(*args: str) -> dict[str, Any]:
    done = subprocess.run(
        [sys.executable, "-m", "llamafleet.modelsync", *args, "--json"],
        capture_output=True,
        text=True,
        check=False,
        cwd=REPO,
    )
    assert done.returncode == 0, done.stderr
    return yaml.safe_load(done.stdout)


@pytest.fixture(scope="module")
def store() -> Iterator[str]:
    """moto on loopback, with the local stack's bucket; any key pair (inherited by the CLIs)."""
    with pytest.MonkeyPatch.context() as patch, moto_server() as url:
        for name, value in (("AWS_ACCESS_KEY_ID", "local"), ("AWS_SECRET_ACCESS_KEY", "local")):
            patch.setenv(name, value)
        patch.setenv("AWS_DEFAULT_REGION", "us-east-1")
        boto3.client("s3", endpoint_url=url).create_bucket(Bucket="llamafleet-models")
        yield url


def _pod(rendered: Any) -> dict[str, Any]:
    (deployment,) = [o for o in rendered.kubernetes_objects if o["kind"] == "Deployment"]
    return deployment["spec"]["template"]["spec"]


def _with(argv: list[str], flag: str, value: str) -> list[str]:
    index = argv.index(flag)
    return [*argv[: index + 1], value, *argv[index + 2 :]]


def test_llama_server_serves_the_split_model_its_pod_fetched(
    tmp_path: Path, payload: Path, gemma: Path, store: str, api_key: str
) -> None:
    shards = split_with_gguf_writer(gemma, tmp_path / "split")
    assert len(shards) == SHARDS
    pinned = modelsync("inspect", "--digest", str(shards[0]))
    config = yaml.safe_load(stack_file("local").read_text())
    model = config["config"]["llamafleet:models"]["gemma3-270m"]
    model |= {"digest": pinned["digest"], "sizeBytes": pinned["sizeBytes"]}
    model |= {"shards": pinned["shards"], "source": str(shards[0])}
    model["gguf"]["splitCount"] = pinned["gguf"]["splitCount"]
    stack = tmp_path / "Pulumi.local.yaml"
    stack.write_text(yaml.safe_dump(config))
    synced = modelsync(
        "sync", str(shards[0]), "s3://llamafleet-models/models", "--endpoint-url", store
    )
    assert synced["uploaded"] == ["gemma3-270m"]

    pod = _pod(render(str(stack)))
    fetch = pod["initContainers"][0]["command"]
    assert fetch[:2] == ["modelsync", "fetch"]
    cache = tmp_path / "pod-models"
    local_fetch = _with(_with(fetch[2:], "--endpoint-url", store), "--cache-dir", str(cache))
    fetched = modelsync("fetch", *local_fetch)
    assert fetched["bytesDownloaded"] == sum(path.stat().st_size for path in shards)

    (server_container,) = pod["containers"]
    key_file = tmp_path / "api-keys" / Path(API_KEY_FILE).name
    key_file.parent.mkdir()
    key_file.write_text(f"{api_key}\n")
    port = free_port()
    argv = localize_argv(
        [*server_container["command"], *server_container["args"]],
        model_root=cache,
        key_file=key_file,
        port=port,
    )
    argv[0] = str(payload / "llama-server")
    assert argv[argv.index("--model") + 1] == fetched["path"]
    verbose = ["-lv", "4"]  # the loader's lines
    with LlamaServer([*argv, *verbose], port, tmp_path / "server.log") as server:
        server.wait_ready(deadline_s=300)
        assert server.health_codes[-1] == 200
        # llama_model_loader's own line (src/llama-model-loader.cpp of the pinned build).
        assert f"additional {SHARDS - 1} GGUFs metadata loaded" in server.log_text()
