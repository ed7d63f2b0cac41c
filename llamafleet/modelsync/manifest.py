"""The store's manifest: model name -> content-addressed object, size, GGUF metadata, source.

Written last by a sync, so a reader never sees a model whose object is not complete.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Final, cast

from llamafleet.modelsync.digest import parse_digest
from llamafleet.modelsync.errors import StoreError

MANIFEST_VERSION: Final = 1


@dataclass(frozen=True)
class ShardEntry:
    """Shard 2..N of a split model: its object, and its size in bytes."""

    digest: str  # "sha256:<hex>"
    size_bytes: int
    key: str

    def to_json(self) -> dict[str, object]:
        """`{"digest", "sizeBytes", "key"}`."""
        return {"digest": self.digest, "sizeBytes": self.size_bytes, "key": self.key}

    @classmethod
    def from_json(cls, name: str, data: object) -> ShardEntry:
        """A shard of model `name` from its manifest value.

        Raises:
            StoreError: not an object with a string `digest`, an integer `sizeBytes` and a
                string `key`.
        """
        fields = cast(dict[str, object], data) if isinstance(data, dict) else {}
        digest, size, key = fields.get("digest"), fields.get("sizeBytes"), fields.get("key")
        if not isinstance(digest, str) or not isinstance(size, int) or not isinstance(key, str):
            raise StoreError(f"manifest entry {name!r}: a shard lacks digest, sizeBytes or key")
        parse_digest(digest)
        return cls(digest, size, key)


@dataclass(frozen=True)
class ModelEntry:
    """One model in the manifest: its object, size in bytes, GGUF block and source.

    `key` is the object's S3 key (`PREFIX/sha256/<hex>.gguf`); `gguf` is `GgufHeader.to_json()`;
    `source` is the ModelSource's origin. A split model's entry is its first shard's, with
    `shards` 2..N in order (llama-gguf-split's sets; empty for a single file).
    """

    digest: str  # "sha256:<hex>"
    size_bytes: int
    key: str
    gguf: dict[str, object]
    source: dict[str, object]
    shards: tuple[ShardEntry, ...] = ()

    @property
    def hex_digest(self) -> str:
        """The 64 hex digits of `digest`."""
        return parse_digest(self.digest)

    @property
    def digests(self) -> tuple[str, ...]:
        """The hex digest of every file of the model: the first shard's, then the others'."""
        return (self.hex_digest, *(parse_digest(shard.digest) for shard in self.shards))

    def to_json(self) -> dict[str, object]:
        """The entry as manifest.json holds it (camelCase `sizeBytes`; `shards` only for a
        split model, so single-file entries read as before)."""
        document: dict[str, object] = {
            "digest": self.digest,
            "sizeBytes": self.size_bytes,
            "key": self.key,
            "gguf": self.gguf,
            "source": self.source,
        }
        if self.shards:
            document["shards"] = [shard.to_json() for shard in self.shards]
        return document

    @classmethod
    def from_json(cls, name: str, data: object) -> ModelEntry:
        """The entry for model `name` from its manifest.json value; a `gguf` or `source` that
        is missing or not an object becomes {}.

        Raises:
            StoreError: `data` is not an object, or lacks a string `digest`, an integer
                `sizeBytes` or a string `key`, or has `shards` that are not a list of such.
        """
        if not isinstance(data, dict):
            raise StoreError(f"manifest entry {name!r} is not an object")
        entry = cast(dict[str, object], data)
        digest, size, key = entry.get("digest"), entry.get("sizeBytes"), entry.get("key")
        if not isinstance(digest, str) or not isinstance(size, int) or not isinstance(key, str):
            raise StoreError(f"manifest entry {name!r} lacks digest, sizeBytes or key")
        parse_digest(digest)
        gguf, source = entry.get("gguf", {}), entry.get("source", {})
        shards = entry.get("shards", [])
        if not isinstance(shards, list):
            raise StoreError(f"manifest entry {name!r}: shards is not a list")
        return cls(
            digest=digest,
            size_bytes=size,
            key=key,
            gguf=cast(dict[str, object], gguf) if isinstance(gguf, dict) else {},
            source=cast(dict[str, object], source) if isinstance(source, dict) else {},
            shards=tuple(ShardEntry.from_json(name, shard) for shard in cast(list[object], shards)),
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
