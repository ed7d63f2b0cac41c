"""What the pinned llama-server would refuse to load as --model, refused first (one line)."""

from __future__ import annotations

import os
from pathlib import Path

from llamafleet.modelsync.errors import GgufError
from llamafleet.modelsync.gguf import GgufHeader, SplitInfo, read_header
from llamafleet.modelsync.splits import shard_set


def _set_state(path: Path, split: SplitInfo) -> str:
    """` (a complete set of N shards, B bytes)`, or why the set is not one, for shard 1."""
    if split.number != 0:
        return ""
    try:
        found = shard_set(path)
    except GgufError as err:
        return f" ({str(err).removeprefix(f'{path}: ')})"
    return f" (a complete set of {len(found.shards)} shards, {found.size_bytes} bytes)"


def servable_problem(header: GgufHeader, path: Path) -> str | None:
    """Why the pinned llama-server would refuse `path` as its --model (None when it would load):

    - a shard of a split model (`split.count` > 1): llama.cpp loads shard 1 only with its
      siblings beside it under llama-gguf-split's names (src/llama-model-loader.cpp);
    - vision-tower tensors (`v.*`, `mm.*`) inside the model GGUF, as in Ollama's merged blobs:
      the text model's loader creates no such tensors and stops with "wrong number of tensors"
      (src/llama-model-loader.cpp); vision needs a text-only GGUF plus --mmproj.
    """
    split = header.split
    if split is not None:
        return (
            f"{path}: shard {split.number + 1} of {split.count} of a split model"
            f"{_set_state(path, split)}: split models are not supported yet; merge the shards "
            "(llama-gguf-split --merge FIRST-SHARD OUT) and use the merged file"
        )
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
    """`read_header`, then refuse what the pinned llama-server would not load as --model.

    Raises:
        GgufError: as read_header, or the file is a split shard or holds a vision tower
            (`servable_problem`).
    """
    header = read_header(path)
    problem = servable_problem(header, Path(path))
    if problem is not None:
        raise GgufError(problem)
    return header
