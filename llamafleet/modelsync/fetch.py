"""Fetch a model by digest into a node-local cache: what each pod's init container runs.

The file lands as `<cache>/sha256/<hex>.gguf` only after its bytes hashed to `<hex>` while being
written to a temporary file in the same folder (fsync, then an atomic rename). A sidecar
`<hex>.gguf.verified` records the size, mtime, inode and ctime the file had when verified; a restart
whose file still matches skips the download and the re-hash, any other state is re-hashed.
An exclusive lock serialises pods of one node that share the cache folder.

A split model's shards are each fetched so, then hard-linked under the names llama.cpp looks for
(`splits.split_layout`), and the set is checked whole, as llama-server will load it.
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

from llamafleet.modelsync.digest import format_digest, hash_file, parse_digest
from llamafleet.modelsync.download import stream_object
from llamafleet.modelsync.errors import (
    DigestMismatchError,
    GgufError,
    ObjectNotFoundError,
    SourceError,
    StoreError,
)
from llamafleet.modelsync.gguf import read_raw, split_info
from llamafleet.modelsync.progress import NoProgress, ProgressSink
from llamafleet.modelsync.splits import shard_set, split_layout
from llamafleet.modelsync.store import ObjectHead, RemoteStore

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


class MismatchedObjects:
    """The objects (key and ETag) whose bytes hashed to another digest than their key's, with
    that digest: kept across a fetcher's attempts, so a retry downloads such an object again only
    once it was written again (a new ETag), instead of every pod of a fleet pulling the same
    wrong bytes at each retry."""

    def __init__(self) -> None:
        self._hashed: dict[tuple[str, str], str] = {}

    def record(self, head: ObjectHead, actual_hex: str) -> None:
        """`head`'s bytes hashed to `actual_hex` (an object without an ETag is not recorded:
        nothing would tell its next version apart)."""
        if head.etag:
            self._hashed[head.key, head.etag] = actual_hex

    def hashed_to(self, head: ObjectHead) -> str | None:
        """What `head`'s bytes hashed to, when this very version was downloaded before."""
        return self._hashed.get((head.key, head.etag)) if head.etag else None


def _download(
    store: RemoteStore,
    hex_digest: str,
    final: Path,
    progress: ProgressSink,
    mismatched: MismatchedObjects,
) -> int:
    """Download `hex_digest` into `final` (bytes hashed while written); its size in bytes.

    Raises:
        ObjectNotFoundError: the store holds no such object.
        DigestMismatchError: the bytes read hash to another digest (nothing kept), now or, for
            the same version of the object (its ETag), in an earlier call with `mismatched`.

    A failed request is a StoreError whose cause is botocore's error.
    """
    head = store.object_head(hex_digest)
    url = f"s3://{store.location.bucket}/{store.location.object_key(hex_digest)}"
    if head is None:
        raise ObjectNotFoundError(f"{url}: no such object in the store")
    size = head.size
    known = mismatched.hashed_to(head)
    if known is not None:
        raise DigestMismatchError(
            f"{url}: content hashes to sha256:{known}, not sha256:{hex_digest}, and is unchanged "
            f"since (ETag {head.etag}); not downloaded again"
        )
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
            mismatched.record(head, hasher.hexdigest())
            raise DigestMismatchError(
                f"{url}: content hashes to sha256:{hasher.hexdigest()}, not sha256:{hex_digest};"
                " nothing kept"
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
    *,
    mismatched: MismatchedObjects | None = None,
) -> FetchResult:
    """Ensure `<cache_dir>/sha256/<hex>.gguf` holds the verified bytes of `hex_digest`.
    `mismatched`, shared by a fetcher's attempts, keeps it from downloading again an object
    version that hashed to another digest (`MismatchedObjects`).

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
        size = _download(
            store, hex_digest, final, progress or NoProgress(), mismatched or MismatchedObjects()
        )
        _write_marker(final, marker, hex_digest)
    return FetchResult(final, format_digest(hex_digest), size, "downloaded", size)


def fetch_model_files(
    store: RemoteStore,
    hex_digest: str,
    cache_dir: Path,
    shard_digests: list[str] | None = None,
    progress: ProgressSink | None = None,
    *,
    mismatched: MismatchedObjects | None = None,
) -> FetchResult:
    """`fetch_model`; and when that file is shard 1 of a split model, every other shard too, each
    verified, then laid out under split names (`splits.split_layout`): the result's `path` is
    shard 1's split name (what --model takes), its sizes cover the set. The other shards'
    digests come from `shard_digests` (hex, in order, as settings pin them) or, without it, from
    the store's manifest entry whose first file is `hex_digest`. `mismatched`: as for
    `fetch_model`, for every file.

    Raises:
        GgufError: `shard_digests` given for a file that is not a split model; the number of
            shards disagrees with the file's `split.count`; the laid-out set is incomplete or
            mixed (`splits.shard_set`).

    Without shard digests, a manifest that names none for the set raises StoreError, as do the
    store's own failures.
    """
    first = fetch_model(store, hex_digest, cache_dir, progress, mismatched=mismatched)
    split = split_info(first.path, read_raw(first.path).metadata)
    if split is None:
        if shard_digests:
            raise GgufError(f"{first.digest}: shards given, but it is not a split model")
        return first
    if shard_digests is None:
        shard_digests = _manifest_shards(store, hex_digest, split.count)
    if len(shard_digests) != split.count - 1:
        raise GgufError(
            f"{first.digest}: shard 1 of {split.count}, but {len(shard_digests)} other shard(s) "
            f"given; give shards 2..{split.count} in order"
        )
    fetched = [first] + [
        fetch_model(store, h, cache_dir, progress, mismatched=mismatched) for h in shard_digests
    ]
    layout = [cache_dir / split_layout(hex_digest, split.count, n) for n in range(split.count)]
    layout[0].parent.mkdir(parents=True, exist_ok=True)
    for result, named in zip(fetched, layout, strict=True):
        _link_verified(result.path, named, parse_digest(result.digest))
    shard_set(layout[0])
    statuses = {result.status for result in fetched}
    status = (
        "downloaded"
        if "downloaded" in statuses
        else "reverified"
        if "reverified" in statuses
        else "present"
    )
    return FetchResult(
        layout[0],
        first.digest,
        sum(result.size_bytes for result in fetched),
        status,
        sum(result.bytes_downloaded for result in fetched),
    )


def _manifest_shards(store: RemoteStore, hex_digest: str, count: int) -> list[str]:
    for entry in store.read_manifest().models.values():
        if entry.hex_digest == hex_digest and entry.shards:
            return list(entry.digests[1:])
    raise StoreError(
        f"sha256:{hex_digest} is shard 1 of {count} of a split model and the manifest of "
        f"{store.location.url} names no shards for it; give the other shards' digests"
    )


def _link_verified(final: Path, named: Path, hex_digest: str) -> None:
    """Hard-link the verified `final` as `named` (a regular file: llama.cpp opens it by name);
    a hard link changes the inode's ctime, so the verified marker is rewritten."""
    marker = final.with_name(final.name + MARKER_SUFFIX)
    with _exclusive(final.with_name(final.name + ".lock")):
        if named.exists() and named.samefile(final):
            return
        verified = _marker_matches(final, marker, hex_digest)
        staging = named.with_name(f".{named.name}.{os.getpid()}{PARTIAL_SUFFIX}")
        with suppress(FileNotFoundError):
            staging.unlink()
        os.link(final, staging)
        os.replace(staging, named)
        _fsync_dir(named.parent)
        if verified:
            _write_marker(final, marker, hex_digest)
