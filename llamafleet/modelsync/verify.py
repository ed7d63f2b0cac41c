"""Re-hash stored or local copies against what the manifest says they are."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

from llamafleet.modelsync.digest import format_digest, hash_file, parse_digest
from llamafleet.modelsync.download import stream_object
from llamafleet.modelsync.errors import SourceError, StoreError
from llamafleet.modelsync.manifest import ModelEntry
from llamafleet.modelsync.progress import NoProgress, ProgressSink
from llamafleet.modelsync.store import RemoteStore


@dataclass(frozen=True)
class VerifyResult:
    """One check: the model name (or file path), `expected` and `actual` as `sha256:<hex>`
    (`actual` None when nothing was hashed), `ok`, and a one-line `detail`."""

    name: str
    expected: str
    actual: str | None
    ok: bool
    detail: str

    def to_json(self) -> dict[str, object]:
        """The result as a JSON object with the same field names."""
        return {
            "name": self.name,
            "expected": self.expected,
            "actual": self.actual,
            "ok": self.ok,
            "detail": self.detail,
        }


def verify_remote_entry(
    store: RemoteStore, name: str, entry: ModelEntry, progress: ProgressSink | None = None
) -> VerifyResult:
    """Check the stored object of `entry` (reported as `name`): its size (one HEAD), then the
    SHA-256 of all its bytes.

    A missing object or one of the wrong size is a failed result, not an error.
    """
    size = store.object_size(entry.hex_digest)
    if size is None:
        return VerifyResult(name, entry.digest, None, False, f"object {entry.key} is missing")
    if size != entry.size_bytes:
        detail = f"object has {size} bytes, manifest says {entry.size_bytes}"
        return VerifyResult(name, entry.digest, None, False, detail)
    hasher = hashlib.sha256()
    advance = (progress or NoProgress()).track(f"verifying {name}", size)
    stream_object(
        store, store.location.object_key(entry.hex_digest), size, hasher.update, advance=advance
    )
    actual = format_digest(hasher.hexdigest())
    ok = actual == entry.digest
    return VerifyResult(name, entry.digest, actual, ok, "ok" if ok else "content differs")


def verify_remote(
    store: RemoteStore, names: list[str] | None = None, progress: ProgressSink | None = None
) -> list[VerifyResult]:
    """Re-hash the stored object of each named model (all when none named), and each of its
    other files (reported by member name: `model#2` for shard 2, `model#adapter1`,
    `model#projector`).

    Raises:
        StoreError: a named model is not in the manifest.
    """
    manifest = store.read_manifest()
    wanted = names or sorted(manifest.models)
    unknown = [name for name in wanted if name not in manifest.models]
    if unknown:
        raise StoreError(f"not in the manifest of {store.location.url}: {', '.join(unknown)}")
    results: list[VerifyResult] = []
    for name in wanted:
        entry = manifest.models[name]
        results.append(verify_remote_entry(store, name, entry, progress))
        for member, file in entry.named_files(name):
            as_entry = ModelEntry(file.digest, file.size_bytes, file.key, {}, {})
            results.append(verify_remote_entry(store, member, as_entry, progress))
    return results


def verify_local(path: Path, digest: str) -> VerifyResult:
    """Hash the local file `path` and compare it with `digest` (`sha256:<hex>`).

    Raises:
        SourceError: the file cannot be read.
    """
    expected = format_digest(parse_digest(digest))
    try:
        actual = format_digest(hash_file(path))
    except OSError as err:
        raise SourceError(f"{path}: cannot read: {err.strerror or err}") from err
    ok = actual == expected
    return VerifyResult(str(path), expected, actual, ok, "ok" if ok else "content differs")
