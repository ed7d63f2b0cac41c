"""What the pinned llama-server would refuse to load as --model, refused first (one line)."""

from __future__ import annotations

import os
from pathlib import Path

from llamafleet.modelsync.errors import GgufError
from llamafleet.modelsync.gguf import GgufHeader, RawGguf, SplitInfo, header_of, read_raw
from llamafleet.modelsync.parts import role_of
from llamafleet.modelsync.splits import shard_set, split_name


def _split_problem(path: Path, split: SplitInfo) -> str | None:
    """Why llama-server would not load shard `path` as --model; None for shard 1 of a complete
    set named as llama-gguf-split names it."""
    if split.number != 0:
        return (
            f"{path}: shard {split.number + 1} of {split.count} of a split model: a split model "
            f"loads from its first shard ({split_name('<prefix>', 0, split.count)}), the others "
            "beside it; give that one"
        )
    try:
        shard_set(path)
    except GgufError as err:
        return str(err)
    return None


def servable_problem(header: GgufHeader, path: Path) -> str | None:
    """Why the pinned llama-server would refuse `path` as its --model (None when it would load):

    - a shard of a split model (`split.count` > 1) other than the first of a complete set:
      llama.cpp loads shard 1 and finds its siblings beside it under llama-gguf-split's names
      (llama_get_list_splits, src/llama-model-loader.cpp of the pinned build);
    - vision-tower tensors (`v.*`, `mm.*`) inside the model GGUF, as in Ollama's merged blobs:
      the text model's loader creates no such tensors and stops with "wrong number of tensors"
      (src/llama-model-loader.cpp); vision needs a text-only GGUF plus --mmproj.
    """
    if header.split is not None and (problem := _split_problem(path, header.split)):
        return problem
    if header.vision_tensors:
        shown = ", ".join(header.vision_tensors[:2])
        return (
            f"{path}: the {header.architecture} model GGUF also holds a vision tower "
            f"({len(header.vision_tensors)} v.*/mm.* tensors, e.g. {shown}), as Ollama's merged "
            "blobs do; llama-server loads this architecture text-only and stops with 'wrong "
            "number of tensors'; use a text-only GGUF of the model (vision: its mmproj file)"
        )
    return None


def read_servable_header(path: str | os.PathLike[str]) -> GgufHeader:
    """`read_header`, then refuse what the pinned llama-server would not load as --model
    (`servable_header`)."""
    return servable_header(read_raw(path))


def servable_header(raw: RawGguf) -> GgufHeader:
    """The model facts of a header read by read_raw, refusing what the pinned llama-server
    would not load as --model.

    Raises:
        GgufError: as gguf.header_of, or the file is a LoRA adapter or a projector (part of a
            model, not one), or a split shard llama-server would not load (not the first, or
            its set incomplete or mixed), or it holds a vision tower (`servable_problem`).
    """
    role = role_of(raw.metadata)
    if role is not None:
        what = "a LoRA adapter" if role == "adapter" else "a multimodal projector (mmproj)"
        key = "adapters" if role == "adapter" else "projector"
        raise GgufError(
            f"{raw.path}: {what}, not a model: sync it with its model (--{role}; settings: "
            f"models.<name>.{key})"
        )
    header = header_of(raw)
    problem = servable_problem(header, raw.path)
    if problem is not None:
        raise GgufError(problem)
    return header
