"""Local model sources: GGUF files named by their stem."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from llamafleet.modelsync.errors import SourceError


@dataclass(frozen=True)
class ModelSource:
    """A model to sync: its manifest name, the local file, and where it came from."""

    name: str
    path: Path
    origin: dict[str, object] = field(default_factory=dict[str, object])
    # Hex digest the source vouches for (an Ollama blob's name); trusted unless verifying.
    known_digest: str | None = None
    # For shards 2..N of a split model: the name of the model whose entry lists this shard
    # (its first shard's source); such a source gets no manifest entry of its own.
    member_of: str | None = None

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
