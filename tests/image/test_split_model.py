"""A split model end to end: the 270M test model split by llama.cpp's own `gguf` writer into
three shards, synced as one model, fetched by the init container's rendered command (every shard
pinned, each verified) and served by the pinned llama-server from the rendered argv
(../shared/cases/c01: llama-server answers /health 200 from the fetched shards)."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from llama_server import LlamaServer
from model_files import fetch_as_pod, modelsync, rendered_pod, server_argv_as_pod

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

    pod = rendered_pod(stack)
    fetched = fetch_as_pod(pod, store, tmp_path / "pod-models")
    assert fetched["bytesDownloaded"] == sum(path.stat().st_size for path in shards)

    argv, port = server_argv_as_pod(pod, tmp_path / "pod-models", tmp_path, api_key, payload)
    assert argv[argv.index("--model") + 1] == fetched["path"]
    verbose = ["-lv", "4"]  # the loader's lines
    with LlamaServer([*argv, *verbose], port, tmp_path / "server.log") as server:
        server.wait_ready(deadline_s=300)
        assert server.health_codes[-1] == 200
        # llama_model_loader's own line (src/llama-model-loader.cpp of the pinned build).
        assert f"additional {SHARDS - 1} GGUFs metadata loaded" in server.log_text()
