"""Fetch a model by digest into a node-local cache: what each pod's init container runs.

The file lands as `<cache>/sha256/<hex>.gguf` only after its bytes hashed to `<hex>` while being
written to a temporary file in the same folder (fsync, then an atomic rename). A sidecar
`<hex>.gguf.verified` records the size, mtime, inode and ctime the file had when verified; a restart
whose file still matches skips the download and the re-hash, any other state is re-hashed.
An exclusive lock serialises pods of one node that share the cache folder.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
from collections.abc import Generator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from llamafleet.modelsync.digest import format_digest, hash_file
from llamafleet.modelsync.download import stream_object
from llamafleet.modelsync.errors import DigestMismatchError, SourceError, StoreError
from llamafleet.modelsync.progress import NoProgress, ProgressSink
from llamafleet.modelsync.store import RemoteStore

MARKER_SUFFIX: Final = ".verified"
PARTIAL_SUFFIX: Final = ".partial"


@dataclass(frozen=True)
class FetchResult:
    """Where a fetched model lies (`<cache_dir>/sha256/<hex>.gguf`) and how it got there.

    `digest` is `sha256:<hex>`; `size_bytes` and `bytes_downloaded` are bytes. `status` is
    "present" (the verified marker matched), "reverified" (re-hashed, nothing downloaded) or
    "downloaded".
    """

    path: Path
    digest: str
    size_bytes: int
    status: str  # "present" | "reverified" | "downloaded"
    bytes_downloaded: int

    def to_json(self) -> dict[str, object]:
        """The result as the CLI prints it: camelCase keys, the path as a string."""
        return {
            "path": str(self.path),
            "digest": self.digest,
            "sizeBytes": self.size_bytes,
            "status": self.status,
            "bytesDownloaded": self.bytes_downloaded,
        }


def _fingerprint(path: Path, hex_digest: str) -> dict[str, object]:
    stat = path.stat()
    return {
        "digest": format_digest(hex_digest),
        "size": stat.st_size,
        "mtimeNs": stat.st_mtime_ns,
        "inode": stat.st_ino,
        "ctimeNs": stat.st_ctime_ns,
    }


def _marker_matches(final: Path, marker: Path, hex_digest: str) -> bool:
    try:
        recorded = json.loads(marker.read_text())
        return recorded == _fingerprint(final, hex_digest)
    except (OSError, ValueError):
        return False


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _write_marker(final: Path, marker: Path, hex_digest: str) -> None:
    staging = marker.with_name(marker.name + PARTIAL_SUFFIX)
    staging.write_text(json.dumps(_fingerprint(final, hex_digest)))
    os.replace(staging, marker)
    _fsync_dir(final.parent)


@contextmanager
def _exclusive(lock_path: Path) -> Generator[None]:
    with lock_path.open("a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def _download(store: RemoteStore, hex_digest: str, final: Path, progress: ProgressSink) -> int:
    size = store.object_size(hex_digest)
    if size is None:
        key = store.location.object_key(hex_digest)
        raise StoreError(f"s3://{store.location.bucket}/{key}: no such object in the store")
    partial = final.with_name(f".{final.name}.{os.getpid()}{PARTIAL_SUFFIX}")
    hasher = hashlib.sha256()
    try:
        with partial.open("wb") as out:

            def consume(data: bytes) -> None:
                hasher.update(data)
                out.write(data)

            key = store.location.object_key(hex_digest)
            advance = progress.track(f"fetching {hex_digest[:12]}", size)
            stream_object(store, key, size, consume, advance=advance)
            out.flush()
            os.fsync(out.fileno())
        if hasher.hexdigest() != hex_digest:
            raise DigestMismatchError(
                f"s3://{store.location.bucket}/{store.location.object_key(hex_digest)}: content"
                f" hashes to sha256:{hasher.hexdigest()}, not sha256:{hex_digest}; nothing kept"
            )
        os.replace(partial, final)
    finally:
        with suppress(FileNotFoundError):
            partial.unlink()
    _fsync_dir(final.parent)
    return size


def fetch_model(
    store: RemoteStore,
    hex_digest: str,
    cache_dir: Path,
    progress: ProgressSink | None = None,
) -> FetchResult:
    """Ensure `<cache_dir>/sha256/<hex>.gguf` holds the verified bytes of `hex_digest`.

    Raises:
        SourceError: the `sha256` cache folder cannot be created.
    """
    folder = cache_dir / "sha256"
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise SourceError(f"{folder}: cannot create cache folder: {err.strerror}") from err
    final = folder / f"{hex_digest}.gguf"
    marker = final.with_name(final.name + MARKER_SUFFIX)
    with _exclusive(final.with_name(final.name + ".lock")):
        for stale in folder.glob(f".{final.name}.*{PARTIAL_SUFFIX}"):
            stale.unlink()
        if final.exists():
            if _marker_matches(final, marker, hex_digest):
                return FetchResult(
                    final, format_digest(hex_digest), final.stat().st_size, "present", 0
                )
            if hash_file(final) == hex_digest:
                _write_marker(final, marker, hex_digest)
                size = final.stat().st_size
                return FetchResult(final, format_digest(hex_digest), size, "reverified", 0)
            final.unlink()
        with suppress(FileNotFoundError):
            marker.unlink()
        size = _download(store, hex_digest, final, progress or NoProgress())
        _write_marker(final, marker, hex_digest)
    return FetchResult(final, format_digest(hex_digest), size, "downloaded", size)
