"""Local model sources: GGUF files named by their stem."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from llamafleet.modelsync.errors import SourceError

MemberRole = Literal["shard", "adapter", "projector"]


@dataclass(frozen=True)
class ModelSource:
    """A model to sync: its manifest name, the local file, and where it came from."""

    name: str
    path: Path
    origin: dict[str, object] = field(default_factory=dict[str, object])
    # Hex digest the source vouches for (an Ollama blob's name); trusted unless verifying.
    known_digest: str | None = None
    # For another file of a model (shards 2..N of a split model, a LoRA adapter, a vision
    # projector): the name of the model whose entry lists it, and what it is to that model;
    # such a source gets no manifest entry of its own.
    member_of: str | None = None
    role: MemberRole = "shard"

    @classmethod
    def from_file(cls, path: Path) -> ModelSource:
        """A source named by the file's stem, with origin `{"kind": "file", "path": ...}`."""
        return cls(path.stem, path, {"kind": "file", "path": str(path)})


def discover_files(source: Path) -> list[ModelSource]:
    """One GGUF file, or every `*.gguf` directly inside a folder.

    Raises:
        SourceError: `source` is neither a file nor a folder, or the folder has no `*.gguf`.
    """
    if source.is_file():
        return [ModelSource.from_file(source)]
    if not source.is_dir():
        raise SourceError(f"{source}: no such file or folder")
    files = sorted(path for path in source.glob("*.gguf") if path.is_file())
    if not files:
        raise SourceError(f"{source}: no *.gguf files in this folder")
    return [ModelSource.from_file(path) for path in files]


def member_name(model: str, number: int) -> str:
    """The source name of shard `number` (0-based, > 0) of split model `model`: `model#2`.
    Never a manifest name (`#` is not allowed in one)."""
    return f"{model}#{number + 1}"


def adapter_member(model: str, index: int) -> str:
    """The source name of adapter `index` (0-based) of `model`: `model#adapter1`."""
    return f"{model}#adapter{index + 1}"


def projector_member(model: str) -> str:
    """The source name of `model`'s vision projector: `model#projector`."""
    return f"{model}#projector"
