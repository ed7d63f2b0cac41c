"""A LoRA adapter end to end: an adapter for the 270M test model, written by llama.cpp's own
`gguf` writer, synced with its model as one manifest entry, pinned in the stack file, fetched by
the init container's rendered command (each file verified) and loaded by the pinned llama-server
from the rendered argv (`--lora-scaled FILE:SCALE`): `/lora-adapters` lists it at its scale."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from llama_server import LlamaServer, get
from model_files import fetch_as_pod, modelsync, rendered_pod, server_argv_as_pod
from support.reference_gguf import write_adapter

from llamafleet.settings.load import stack_file

pytestmark = [pytest.mark.image, pytest.mark.s3]
RANK = 4
SCALE = 0.5


def adapter_for(model: Path, out: Path) -> Path:
    """A rank-RANK LoRA on every layer's attn_q of `model`, shaped as llama-adapter.cpp checks
    (lora_a ne = [model ne0, rank], lora_b ne = [rank, model ne1]); zeros, so it changes nothing
    the test could mistake for a failure."""
    import gguf  # noqa: PLC0415

    reader = gguf.GGUFReader(model)
    architecture = reader.fields[gguf.Keys.General.ARCHITECTURE].contents()
    shapes: dict[str, tuple[int, ...]] = {}
    for tensor in reader.tensors:
        if tensor.name.endswith(".attn_q.weight"):
            ne0, ne1 = (int(n) for n in tensor.shape[:2])
            shapes[f"{tensor.name}.lora_a"] = (RANK, ne0)
            shapes[f"{tensor.name}.lora_b"] = (ne1, RANK)
    assert shapes, "the test model has no attn_q tensors"
    return write_adapter(out, architecture, shapes)


def test_llama_server_loads_the_adapter_its_pod_fetched(
    tmp_path: Path, payload: Path, gemma: Path, store: str, api_key: str
) -> None:
    adapter = adapter_for(gemma, tmp_path / "tone.gguf")
    pinned = modelsync("inspect", "--digest", str(adapter))
    assert pinned["role"] == "adapter"
    model = modelsync("inspect", "--digest", str(gemma))
    config = yaml.safe_load(stack_file("local").read_text())
    settings = config["config"]["llamafleet:models"]["gemma3-270m"]
    settings |= {"digest": model["digest"], "sizeBytes": model["sizeBytes"], "source": str(gemma)}
    settings["adapters"] = [
        {
            "digest": pinned["digest"],
            "sizeBytes": pinned["sizeBytes"],
            "scale": SCALE,
            "source": str(adapter),
        }
    ]
    stack = tmp_path / "Pulumi.local.yaml"
    stack.write_text(yaml.safe_dump(config))
    synced = modelsync(
        "sync",
        str(gemma),
        "s3://llamafleet-models/models",
        "--endpoint-url",
        store,
        "--adapter",
        str(adapter),
    )
    assert synced["models"][gemma.stem]["adapters"][0]["digest"] == pinned["digest"]

    pod = rendered_pod(stack)
    assert pinned["digest"] in pod["initContainers"][0]["command"]
    fetched = fetch_as_pod(pod, store, tmp_path / "pod-models")
    assert [f["bytesDownloaded"] for f in fetched["files"]] == [adapter.stat().st_size]

    argv, port = server_argv_as_pod(pod, tmp_path / "pod-models", tmp_path, api_key, payload)
    loaded = f"{fetched['files'][0]['path']}:{SCALE:g}"
    assert argv[argv.index("--lora-scaled") + 1] == loaded
    with LlamaServer(argv, port, tmp_path / "server.log") as server:
        server.wait_ready(deadline_s=300)
        status, body = get(port, "/lora-adapters", {"Authorization": f"Bearer {api_key}"})
    assert status == 200, body
    (listed,) = json.loads(body)
    assert (listed["path"], listed["scale"]) == (fetched["files"][0]["path"], SCALE)
