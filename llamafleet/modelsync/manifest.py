"""The store's manifest: model name -> content-addressed object, size, GGUF metadata, source.

Written last by a sync, so a reader never sees a model whose object is not complete.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Final, cast

from llamafleet.modelsync.digest import parse_digest
from llamafleet.modelsync.errors import StoreError
from llamafleet.modelsync.sources import adapter_member, member_name, projector_member

MANIFEST_VERSION: Final = 1


@dataclass(frozen=True)
class FileEntry:
    """Another file of a model (a shard 2..N, a LoRA adapter, a vision projector): its object,
    and its size in bytes."""

    digest: str  # "sha256:<hex>"
    size_bytes: int
    key: str

    def to_json(self) -> dict[str, object]:
        """`{"digest", "sizeBytes", "key"}`."""
        return {"digest": self.digest, "sizeBytes": self.size_bytes, "key": self.key}

    @classmethod
    def from_json(cls, name: str, data: object) -> FileEntry:
        """A file of model `name` from its manifest value.

        Raises:
            StoreError: not an object with a string `digest`, an integer `sizeBytes` and a
                string `key`.
        """
        fields = cast(dict[str, object], data) if isinstance(data, dict) else {}
        digest, size, key = fields.get("digest"), _size(fields), fields.get("key")
        if not isinstance(digest, str) or size is None or not isinstance(key, str):
            raise StoreError(f"manifest entry {name!r}: a file lacks digest, sizeBytes or key")
        parse_digest(digest)
        return cls(digest, size, key)


def _size(fields: dict[str, object]) -> int | None:
    """`sizeBytes` as an integer; a whole float counts (the Pulumi engine hands numbers of the
    state back as floats)."""
    size = fields.get("sizeBytes")
    if isinstance(size, bool) or not isinstance(size, int | float) or size != int(size):
        return None
    return int(size)


@dataclass(frozen=True)
class ModelEntry:
    """One model in the manifest: its object, size in bytes, GGUF block and source.

    `key` is the object's S3 key (`PREFIX/sha256/<hex>.gguf`); `gguf` is `GgufHeader.to_json()`;
    `source` is the ModelSource's origin. A split model's entry is its first shard's, with
    `shards` 2..N in order (llama-gguf-split's sets; empty for a single file); `adapters` are
    LoRA adapters (--lora), in order, and `projector` a vision projector (--mmproj).
    """

    digest: str  # "sha256:<hex>"
    size_bytes: int
    key: str
    gguf: dict[str, object]
    source: dict[str, object]
    shards: tuple[FileEntry, ...] = ()
    adapters: tuple[FileEntry, ...] = ()
    projector: FileEntry | None = None

    @property
    def hex_digest(self) -> str:
        """The 64 hex digits of `digest`."""
        return parse_digest(self.digest)

    @property
    def files(self) -> tuple[FileEntry, ...]:
        """Every file of the model: its own (shard 1's), its other shards, its adapters, then
        its projector."""
        first = FileEntry(self.digest, self.size_bytes, self.key)
        return (first, *self.shards, *self.adapters, *([self.projector] if self.projector else []))

    @property
    def digests(self) -> tuple[str, ...]:
        """The hex digest of every file of the model, in `files` order."""
        return tuple(parse_digest(file.digest) for file in self.files)

    def digests_by_member(self, name: str) -> dict[str, str]:
        """Each file of model `name` (`sha256:<hex>`) by its member name: `name` for the first,
        then as `named_files`; a file in another place (adapters reordered) reads as changed."""
        return {name: self.digest} | {member: f.digest for member, f in self.named_files(name)}

    def named_files(self, name: str) -> list[tuple[str, FileEntry]]:
        """Every file of model `name` but the first, by its member name (`name#2` for shard 2,
        `name#adapter1`, `name#projector`: sources.member_name and the like)."""
        return [
            *((member_name(name, n), shard) for n, shard in enumerate(self.shards, start=1)),
            *((adapter_member(name, i), adapter) for i, adapter in enumerate(self.adapters)),
            *([(projector_member(name), self.projector)] if self.projector else []),
        ]

    def to_json(self) -> dict[str, object]:
        """The entry as manifest.json holds it (camelCase `sizeBytes`; `shards`, `adapters` and
        `projector` only where the model has them, so single-file entries read as before)."""
        document: dict[str, object] = {
            "digest": self.digest,
            "sizeBytes": self.size_bytes,
            "key": self.key,
            "gguf": self.gguf,
            "source": self.source,
        }
        if self.shards:
            document["shards"] = [shard.to_json() for shard in self.shards]
        if self.adapters:
            document["adapters"] = [adapter.to_json() for adapter in self.adapters]
        if self.projector is not None:
            document["projector"] = self.projector.to_json()
        return document

    @classmethod
    def from_json(cls, name: str, data: object) -> ModelEntry:
        """The entry for model `name` from its manifest.json value; a `gguf` or `source` that
        is missing or not an object becomes {}.

        Raises:
            StoreError: `data` is not an object, or lacks a string `digest`, an integer
                `sizeBytes` or a string `key`, or has `shards` or `adapters` that are not lists of
                such, or a `projector` that is not one.
        """
        if not isinstance(data, dict):
            raise StoreError(f"manifest entry {name!r} is not an object")
        entry = cast(dict[str, object], data)
        digest, size, key = entry.get("digest"), _size(entry), entry.get("key")
        if not isinstance(digest, str) or size is None or not isinstance(key, str):
            raise StoreError(f"manifest entry {name!r} lacks digest, sizeBytes or key")
        parse_digest(digest)
        gguf, source = entry.get("gguf", {}), entry.get("source", {})
        shards, adapters = (_file_list(name, entry, key) for key in ("shards", "adapters"))
        projector = entry.get("projector")
        return cls(
            digest=digest,
            size_bytes=size,
            key=key,
            gguf=cast(dict[str, object], gguf) if isinstance(gguf, dict) else {},
            source=cast(dict[str, object], source) if isinstance(source, dict) else {},
            shards=shards,
            adapters=adapters,
            projector=None if projector is None else FileEntry.from_json(name, projector),
        )

    def encode(self) -> bytes:
        """The entry as an object of its own (stores without conditional writes):
        `{"version": 1, "entry": <to_json()>}`, UTF-8 JSON."""
        return json.dumps({"version": MANIFEST_VERSION, "entry": self.to_json()}, indent=2).encode()

    @classmethod
    def decode(cls, name: str, raw: bytes, where: str) -> ModelEntry:
        """Parse an entry object written by `encode`; `where` starts error messages.

        Raises:
            StoreError: `raw` is not such an object of version 1, or the entry is malformed.
        """
        try:
            data = json.loads(raw)
        except (UnicodeDecodeError, json.JSONDecodeError) as err:
            raise StoreError(f"{where}: manifest entry is not valid JSON: {err}") from err
        if not isinstance(data, dict) or cast(dict[str, object], data).get("version") != 1:
            raise StoreError(f"{where}: not a version {MANIFEST_VERSION} manifest entry")
        return cls.from_json(name, cast(dict[str, object], data).get("entry"))


def _file_list(name: str, entry: dict[str, object], key: str) -> tuple[FileEntry, ...]:
    files = entry.get(key, [])
    if not isinstance(files, list):
        raise StoreError(f"manifest entry {name!r}: {key} is not a list")
    return tuple(FileEntry.from_json(name, item) for item in cast(list[object], files))


@dataclass
class Manifest:
    """The store's manifest: model name -> ModelEntry, as manifest.json version 1."""

    models: dict[str, ModelEntry] = field(default_factory=dict[str, ModelEntry])
    # The store also keeps one object per entry under manifest.d/, which readers merge over
    # these (stores without conditional writes; RemoteStore.conditional_writes).
    per_model_entries: bool = False

    def to_json(self) -> dict[str, object]:
        """`{"version": 1, "models": {name: entry}}`, models sorted by name, and
        `"perModelEntries": true` where the store keeps per-model entry objects."""
        document: dict[str, object] = {
            "version": MANIFEST_VERSION,
            "models": {name: self.models[name].to_json() for name in sorted(self.models)},
        }
        if self.per_model_entries:
            document["perModelEntries"] = True
        return document

    def encode(self) -> bytes:
        """The manifest.json bytes: `to_json()` as UTF-8 JSON indented by 2."""
        return json.dumps(self.to_json(), indent=2).encode("utf-8")

    @classmethod
    def decode(cls, raw: bytes, where: str) -> Manifest:
        """Parse manifest.json bytes; `where` (the manifest's s3:// URL) starts error messages.

        Raises:
            StoreError: `raw` is not JSON, not an object, not version 1, its `models` is not an
                object, or an entry lacks its required fields.
        """
        try:
            data = json.loads(raw)
        except (UnicodeDecodeError, json.JSONDecodeError) as err:
            raise StoreError(f"{where}: manifest is not valid JSON: {err}") from err
        if not isinstance(data, dict):
            raise StoreError(f"{where}: manifest is not a JSON object")
        document = cast(dict[str, object], data)
        if document.get("version") != MANIFEST_VERSION:
            raise StoreError(
                f"{where}: unsupported manifest version {document.get('version')!r}"
                f" (expected {MANIFEST_VERSION})"
            )
        models = document.get("models", {})
        if not isinstance(models, dict):
            raise StoreError(f"{where}: manifest 'models' is not an object")
        entries = cast(dict[str, object], models)
        return cls(
            {name: ModelEntry.from_json(name, value) for name, value in entries.items()},
            per_model_entries=document.get("perModelEntries") is True,
        )
