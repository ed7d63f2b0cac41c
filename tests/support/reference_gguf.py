"""Reference GGUF files written by the `gguf` package (llama.cpp's own writer): header facts and
llama-gguf-split's shard sets, for the header and split tests."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from llamafleet.modelsync.splits import split_name


def write_reference(path: Path, arch: str, **extra: Any) -> Path:
    """A GGUF written by the `gguf` package (llama.cpp's own writer) with `extra` metadata:
    `head_count_kv` (int or per-layer list), `sliding_window`, `pattern` (the raw
    `sliding_window_pattern` value), `split` ((number, count, tensors)), `tensors` (names),
    `chat_template`."""
    import gguf  # noqa: PLC0415
    import numpy  # noqa: PLC0415

    writer = gguf.GGUFWriter(str(path), arch)
    writer.add_context_length(4096)
    writer.add_block_count(extra.get("layers", 6))
    writer.add_embedding_length(128)
    writer.add_head_count(4)
    writer.add_head_count_kv(extra.get("head_count_kv", 2))
    if "sliding_window" in extra:
        writer.add_sliding_window(extra["sliding_window"])
    if "pattern" in extra:
        pattern = extra["pattern"]
        key = f"{arch}.attention.sliding_window_pattern"
        if isinstance(pattern, list):
            writer.add_array(key, pattern)
        else:
            writer.add_uint32(key, pattern)
    if "split" in extra:
        number, count, tensors = extra["split"]
        writer.add_uint16("split.no", number)
        writer.add_uint16("split.count", count)
        writer.add_int32("split.tensors.count", tensors)
    if "chat_template" in extra:
        writer.add_chat_template(extra["chat_template"])
    writer.add_token_list([f"tok{i}" for i in range(300)])
    for name in extra.get("tensors", ["token_embd.weight"]):
        writer.add_tensor(name, numpy.ones((4, 32), dtype=numpy.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


def write_set(
    folder: Path, count: int = 3, prefix: str = "m", declared: int | None = None
) -> list[Path]:
    """`count` shards of one tensor each, named and keyed as llama-gguf-split writes them."""
    folder.mkdir(parents=True, exist_ok=True)
    total = count if declared is None else declared
    return [
        write_reference(
            folder / split_name(prefix, number, count),
            "llama",
            split=(number, count, total),
            tensors=[f"blk.{number}.weight"],
        )
        for number in range(count)
    ]


def write_adapter(
    path: Path,
    arch: str,
    tensors: dict[str, tuple[int, ...]] | None = None,
    adapter_type: str = "lora",
    general_type: str = "adapter",
) -> Path:
    """A LoRA adapter GGUF as convert_lora_to_gguf.py writes one (general.type adapter,
    adapter.type, adapter.lora.alpha) for architecture `arch`; `tensors` maps each name to its
    numpy shape (zeros: an adapter that changes nothing)."""
    import gguf  # noqa: PLC0415
    import numpy  # noqa: PLC0415

    writer = gguf.GGUFWriter(str(path), arch)
    writer.add_string(gguf.Keys.General.TYPE, general_type)
    writer.add_string(gguf.Keys.Adapter.TYPE, adapter_type)
    writer.add_float32(gguf.Keys.Adapter.LORA_ALPHA, 8.0)
    shapes = tensors or {
        "blk.0.attn_q.weight.lora_a": (8, 32),
        "blk.0.attn_q.weight.lora_b": (32, 8),
    }
    for name, shape in shapes.items():
        writer.add_tensor(name, numpy.zeros(shape, dtype=numpy.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


def write_projector(path: Path, vision: bool = True) -> Path:
    """A multimodal projector GGUF's header as llama.cpp's mmproj converters write it
    (architecture clip, clip.has_vision_encoder, clip.projector_type) with one tensor."""
    import gguf  # noqa: PLC0415
    import numpy  # noqa: PLC0415

    writer = gguf.GGUFWriter(str(path), "clip")
    writer.add_bool("clip.has_vision_encoder", vision)
    writer.add_string("clip.projector_type", "gemma3")
    writer.add_tensor("v.patch_embd.weight", numpy.ones((4, 32), dtype=numpy.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path
