"""KV cache sizing against the pinned llama-server's own KV buffers: for the real test model
(sliding-window layers) and a synthetic LFM2 hybrid (per-layer KV heads, 0 on convolution
layers), the estimate lies between what the server allocates and 1.1 times that."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import tiny_gguf
from llama_server import LlamaServer, ServerFactory

from llamafleet.components.sizing import MiB, ServingShape, kv_cache_bytes
from llamafleet.modelsync.gguf import read_header
from llamafleet.settings.placement import facts_of
from llamafleet.settings.schema import GgufMetadata

pytestmark = pytest.mark.image

# llama_kv_cache logs one line per cache (two with sliding-window layers), in MiB, 2 decimals.
KV_BUFFER_LINE = re.compile(r"KV buffer size =\s+([\d.]+) MiB")
SHAPES = [
    ServingShape(context_per_slot=4096, parallel=2, cpus=2, cache_ram_mib=0),
    ServingShape(context_per_slot=16384, parallel=4, cpus=2, cache_ram_mib=0),
    ServingShape(context_per_slot=8192, parallel=1, cpus=2, cache_ram_mib=0, kv_cache_type="q8_0"),
]


def metadata_block(path: Path) -> dict[str, Any]:
    """The keys of `inspect --json`'s gguf block that a stack's `gguf:` accepts, pasted as is."""
    accepted = {field.alias or name for name, field in GgufMetadata.model_fields.items()}
    return {key: value for key, value in read_header(path).to_json().items() if key in accepted}


def reported_kv_bytes(make_server: ServerFactory, model: Path | None, shape: ServingShape) -> int:
    """Starts the rendered argv with the shape's flags (the last of a repeated flag wins) and
    sums the KV buffers the server logs at verbosity 4."""
    extra = ["--ctx-size", str(shape.total_context), "--parallel", str(shape.parallel)]
    extra += ["--cache-type-k", shape.kv_cache_type, "--cache-type-v", shape.kv_cache_type]
    extra += ["-lv", "4"] + (["--model", str(model)] if model is not None else [])
    server: LlamaServer = make_server(extra=extra).start()
    try:
        server.wait_ready()
    finally:
        server.stop()
    sizes = [float(size) for size in KV_BUFFER_LINE.findall(server.log_text())]
    assert sizes, server.log_text()[-3000:]
    return round(sum(sizes) * MiB)


def assert_within(estimate: int, reported: int) -> None:
    # The log rounds each buffer to 0.01 MiB; allow that much below.
    assert reported - 0.01 * MiB <= estimate <= 1.1 * reported, (estimate, reported)


@pytest.mark.parametrize("shape", SHAPES, ids=["4k-x2", "16k-x4", "8k-q8_0"])
def test_sliding_window_model_kv_within_ten_percent(
    make_server: ServerFactory, gemma: Path, shape: ServingShape
) -> None:
    block = metadata_block(gemma)
    assert block["slidingWindow"] == 512 and block["slidingWindowPattern"].count(False) == 3
    facts = facts_of(GgufMetadata.model_validate(block), gemma.stat().st_size)
    assert_within(kv_cache_bytes(facts, shape), reported_kv_bytes(make_server, None, shape))


@pytest.mark.parametrize("shape", SHAPES, ids=["4k-x2", "16k-x4", "8k-q8_0"])
def test_hybrid_model_kv_counts_only_layers_with_kv_heads(
    make_server: ServerFactory, tmp_path_factory: pytest.TempPathFactory, shape: ServingShape
) -> None:
    hybrid = tiny_gguf.write_hybrid(tmp_path_factory.mktemp("hybrid") / "lfm2.gguf")
    block = metadata_block(hybrid)
    assert block["headCountKv"] == tiny_gguf.HYBRID_KV_HEADS
    facts = facts_of(GgufMetadata.model_validate(block), hybrid.stat().st_size)
    assert_within(kv_cache_bytes(facts, shape), reported_kv_bytes(make_server, hybrid, shape))
