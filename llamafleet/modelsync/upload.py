"""Upload one local file to its content-addressed key, verifying its SHA-256 in the same pass.

Design: the key is the digest, so the digest must be known before the upload starts. It comes
from the hash cache, or, when the cache is cold, from one local hashing pass (SHA-256 runs at
over 1 GB/s with SHA-NI, faster than any S3 link, and the upload's re-read is mostly served from
the page cache). The alternative, uploading to a staging key while hashing and then copying
server-side, was rejected: every byte would cross S3 twice (CopyObject stops at 5 GB, beyond
that UploadPartCopy per part), a killed run leaves staging objects, and content the store
already holds (a touched file, the same model under a new name, another machine's upload) would
be uploaded again instead of skipped. A cold file small enough for one PutObject needs no second
pass: it is read whole into memory (`read_whole`), and its digest and its upload (`put_whole`)
come from that one buffer.

The upload pass re-hashes every byte it sends, in order, so what lands under
`sha256/<hex>.gguf` is proven to be that digest even if the file changed after it was hashed.
Each part carries an x-amz-checksum-crc32 that S3 verifies on receipt (moto and rclone do not:
hence our own end-to-end checks, and `verify`), against corruption on the way. CRC32, not
SHA-256, because the whole-file SHA-256 already proves identity: a per-part SHA-256 would be a
third hashing pass over every byte (hashing is what bounds a cold sync on a busy host), while
ISA-L's CRC32 runs at over ten times SHA-256's speed. Both are fed each slice as it is read, while
it is in the core's cache. A file of at most four parts goes in one PutObject whose
x-amz-checksum-sha256 is the whole-file digest itself.

Where the store reports the checksum it computed over the whole object, it must equal the one
computed from the bytes sent, or the object is removed and nothing is recorded. Stores answer a
multipart CRC32 in either form: AWS as the CRC32 of the parts' CRC32s (`<crc>-<parts>`,
COMPOSITE), Ceph RGW and MinIO as the CRC32 of the whole object (FULL_OBJECT), so both are
derived from the parts' CRC32s and either matches. That check costs no request, where listing
or HEADing the new objects would make some stores (rclone serve s3) hash every new byte again
for an MD5 ETag.

Nothing ever appears under the final key before it is complete: files up to four parts go in one
PutObject (atomic), larger ones in a multipart upload that is completed only after the whole-file
digest matched. A killed upload stays listed as an incomplete multipart upload; the next run
resumes it, re-sending only the parts it lacks, and reusing a part only when its size and CRC32
match the local bytes (which still go through the whole-file SHA-256). One part that does not
match means the file changed during the killed run: that upload is aborted and the file sent
afresh. A stale upload goes unnoticed only if every listed part that changed kept its CRC32;
`fetch` and `verify` check the whole object's SHA-256 in any case. Bad local bytes abort the upload.

Memory stays bounded: a reader thread per file takes a part buffer from shared PartBuffers (a
byte budget) before reading into it, and the part's sender gives it back once sent, so at most
`memory_budget` bytes of parts exist at once, whatever the file sizes and the part size they
force.
"""

from __future__ import annotations

import base64
import hashlib
import io
import threading
from collections.abc import Callable
from concurrent.futures import Executor, Future, wait
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Final

from botocore.exceptions import BotoCoreError, ClientError
from isal.isal_zlib import crc32_combine

from llamafleet.modelsync.buffers import PartBuffers, read_into
from llamafleet.modelsync.digest import Crc32, crc32_base64, hex_to_base64
from llamafleet.modelsync.errors import DigestMismatchError, SourceError, StoreError
from llamafleet.modelsync.memory import return_large_buffers_to_os
from llamafleet.modelsync.progress import Advance
from llamafleet.modelsync.retry import with_backoff
from llamafleet.modelsync.store import RemoteStore, describe_error, s3_errors

MIB: Final = 1 << 20
MIN_PART_SIZE: Final = 5 * MIB
MAX_PARTS: Final = 10_000
DEFAULT_PART_SIZE: Final = 8 * MIB
DEFAULT_MEMORY_BUDGET: Final = 128 * MIB
# Up to this many parts' worth, one PutObject beats the five round trips of a multipart upload.
SINGLE_PUT_PARTS: Final = 4


def composite_crc32(part_checksums: list[str]) -> str:
    """S3's COMPOSITE checksum of a multipart object: the CRC32 of its parts' CRC32s, then
    `-<parts>` (what AWS answers when no checksum type was asked for)."""
    joined = b"".join(base64.b64decode(checksum) for checksum in part_checksums)
    return f"{crc32_base64(joined)}-{len(part_checksums)}"


def full_object_crc32(parts: list[tuple[str, int]]) -> str:
    """S3's FULL_OBJECT checksum: the CRC32 of the whole object, from each part's CRC32 and
    length ((base64 CRC32, bytes) in part order) by zlib's crc32_combine, without reading the
    bytes again. Ceph RGW and MinIO answer this form for CRC32 (ceph/ceph PR #71127)."""
    value = 0
    for checksum, length in parts:
        value = crc32_combine(value, int.from_bytes(base64.b64decode(checksum), "big"), length)
    return base64.b64encode(value.to_bytes(4, "big")).decode("ascii")


def part_size_for(file_size: int, preferred: int = DEFAULT_PART_SIZE) -> int:
    """The preferred part size, grown in whole MiB when the file would need over 10,000 parts."""
    needed = -(-file_size // MAX_PARTS)
    return max(preferred, MIN_PART_SIZE, -(-needed // MIB) * MIB)


@dataclass(frozen=True)
class UploadOutcome:
    """One file's upload: its key, bytes sent, number of parts, and how many were resumed.

    A resumed part (already in the store from an interrupted run) adds nothing to `bytes_sent`.
    """

    key: str
    bytes_sent: int
    parts: int
    resumed_parts: int


@dataclass(frozen=True)
class WholeFile:
    """A file read whole into memory, and the SHA-256 of exactly those bytes."""

    path: Path
    data: bytearray
    hex_digest: str


@dataclass(frozen=True)
class _ListedPart:
    etag: str
    size: int
    checksum_crc32: str | None

    def holds(self, data: bytearray, checksum: str) -> bool:
        if self.size != len(data):
            return False
        if self.checksum_crc32:
            return self.checksum_crc32 == checksum
        return self.etag.strip('"') == hashlib.md5(data, usedforsecurity=False).hexdigest()


class _CountedAdvance:
    """Reports progress onwards and remembers how much, so that a restart can take it back."""

    def __init__(self, advance: Advance) -> None:
        self._advance = advance
        self._lock = threading.Lock()
        self.total = 0

    def __call__(self, count: int) -> None:
        with self._lock:
            self.total += count
        self._advance(count)


class _Both:
    """Feeds each slice read to the whole file's SHA-256 and to the part's CRC32 while the slice
    is still in the core's cache (over a whole part, both would re-read it from memory)."""

    def __init__(self, file_hash: Callable[[memoryview], None], part_checksum: Crc32) -> None:
        self._file_hash = file_hash
        self._part_checksum = part_checksum

    def __call__(self, piece: memoryview) -> None:
        self._file_hash(piece)
        self._part_checksum.update(piece)


class _StaleUpload(Exception):
    """A part of the resumed upload does not hold this file's bytes."""


@dataclass(frozen=True)
class _Transfer:
    """One file on its way to one key."""

    path: Path
    key: str
    hex_digest: str
    size: int
    part_size: int
    advance: Advance
    priority: int


@dataclass(frozen=True)
class _PartJob:
    transfer: _Transfer
    upload_id: str
    number: int
    data: bytearray
    checksum_crc32: str
    listed: _ListedPart | None


@dataclass(frozen=True)
class _SentPart:
    number: int
    etag: str
    checksum_crc32: str
    bytes_sent: int


class Uploader:
    """Uploads files into one store, sharing a part pool and a memory budget across files."""

    def __init__(
        self,
        store: RemoteStore,
        part_pool: Executor,
        memory_budget: int = DEFAULT_MEMORY_BUDGET,
        part_size: int = DEFAULT_PART_SIZE,
    ) -> None:
        self._store = store
        self._pool = part_pool
        self._buffers = PartBuffers(memory_budget)
        return_large_buffers_to_os()
        self._part_size = part_size
        self._pending: dict[str, list[dict[str, Any]]] | None = None
        self._pending_lock = threading.Lock()

    def upload(
        self, path: Path, hex_digest: str, size: int, advance: Advance, priority: int = 0
    ) -> UploadOutcome:
        """Upload `path` to its key; parts of lower `priority` files get memory first."""
        key = self._store.location.object_key(hex_digest)
        part_size = part_size_for(size, self._part_size)
        transfer = _Transfer(path, key, hex_digest, size, part_size, advance, priority)
        if self.fits_whole(size):
            return self._put_whole(transfer)
        return self._put_multipart(transfer)

    def fits_whole(self, size: int) -> bool:
        """Whether a file of `size` bytes goes in one PutObject, read whole into memory."""
        return size <= part_size_for(size, self._part_size) * SINGLE_PUT_PARTS

    def read_whole(
        self, path: Path, size: int, priority: int = 0, on_bytes: Advance | None = None
    ) -> WholeFile:
        """Read a file of `size` bytes into a buffer of the memory budget, hashing it as it is
        read; hand it back with `release`.

        Raises:
            SourceError: the file cannot be opened, or does not hold exactly `size` bytes.
        """
        data = self._buffers.take(size, priority)
        hasher = hashlib.sha256()
        try:
            with _open_for_read(path) as stream:
                if read_into(stream, data, hasher.update) != size or stream.read(1):
                    raise SourceError(
                        f"{path}: size changed since it was examined; nothing uploaded"
                    )
        except BaseException:
            self._buffers.give(data)
            raise
        if on_bytes is not None:
            on_bytes(size)
        return WholeFile(path, data, hasher.hexdigest())

    def release(self, whole: WholeFile) -> None:
        """Give the buffer of `whole` back to the memory budget; do not use `whole` after."""
        self._buffers.give(whole.data)

    def put_whole(self, whole: WholeFile, advance: Advance) -> UploadOutcome:
        """One PutObject of bytes in memory, under the key of their own digest, which the store
        checks (x-amz-checksum-sha256)."""
        key = self._store.location.object_key(whole.hex_digest)
        checksum = hex_to_base64(whole.hex_digest)
        with s3_errors(f"uploading {whole.path}"):
            stored = with_backoff(
                lambda: self._store.client.put_object(
                    Bucket=self._store.location.bucket,
                    Key=key,
                    Body=whole.data,
                    Metadata={"sha256": whole.hex_digest},
                    **self._store.checksums(ChecksumSHA256=checksum),
                )
            )
        self._check_stored(stored, "ChecksumSHA256", key, checksum)
        advance(len(whole.data))
        return UploadOutcome(key, len(whole.data), 1, 0)

    def _put_whole(self, transfer: _Transfer) -> UploadOutcome:
        whole = self.read_whole(transfer.path, transfer.size, transfer.priority)
        try:
            if whole.hex_digest != transfer.hex_digest:
                raise DigestMismatchError(
                    f"{transfer.path}: changed since it was hashed; nothing uploaded"
                )
            return self.put_whole(whole, transfer.advance)
        finally:
            self.release(whole)

    def _put_multipart(self, transfer: _Transfer) -> UploadOutcome:
        key = transfer.key
        upload_id, listed = self._resume_or_create(key, transfer.hex_digest)
        try:
            first_try = _CountedAdvance(transfer.advance)
            try:
                sent = self._send_parts(replace(transfer, advance=first_try), upload_id, listed)
            except _StaleUpload:
                # The pending upload holds bytes this file does not (it changed during a killed
                # run): trust none of its parts, and start over.
                self._abort(key, upload_id)
                transfer.advance(-first_try.total)
                upload_id = self._create(key, transfer.hex_digest)
                sent = self._send_parts(transfer, upload_id, {})
        except (DigestMismatchError, SourceError):
            self._abort(key, upload_id)
            raise
        parts = [
            {
                "PartNumber": part.number,
                "ETag": part.etag,
                **self._store.checksums(ChecksumCRC32=part.checksum_crc32),
            }
            for part in sent
        ]
        with s3_errors(f"completing upload of {transfer.path}"):
            completed = with_backoff(
                lambda: self._store.client.complete_multipart_upload(
                    Bucket=self._store.location.bucket,
                    Key=key,
                    UploadId=upload_id,
                    MultipartUpload={"Parts": parts},
                )
            )
        lengths = [
            min(transfer.part_size, transfer.size - offset)
            for offset in range(0, transfer.size, transfer.part_size)
        ]
        checksums = [part.checksum_crc32 for part in sent]
        self._check_stored(
            completed,
            "ChecksumCRC32",
            key,
            composite_crc32(checksums),
            full_object_crc32(list(zip(checksums, lengths, strict=True))),
        )
        resumed = sum(1 for part in sent if part.bytes_sent == 0)
        return UploadOutcome(key, sum(part.bytes_sent for part in sent), len(sent), resumed)

    def _check_stored(
        self, response: dict[str, Any], name: str, key: str, expected: str, *alternatives: str
    ) -> None:
        """Compare the checksum the store says it computed over the whole object (AWS, MinIO
        and Ceph RGW return one; moto and rclone do not) with ours: `expected`, or for a
        multipart upload either form a store may answer (COMPOSITE `<crc>-<parts>` as AWS,
        FULL_OBJECT as RGW and MinIO do for CRC32, whatever type the answer names). A mismatch
        removes the object.

        Raises:
            StoreError: the checksum matches none of ours (raised after the object is removed).
        """
        echoed = response.get(name)
        if echoed is None or str(echoed) in (expected, *alternatives):
            return
        with s3_errors(f"removing {key}"):
            self._store.client.delete_object(Bucket=self._store.location.bucket, Key=key)
        kind = response.get("ChecksumType")
        answered = f"{kind} {name}" if kind else name
        ours = " or ".join((expected, *alternatives))
        raise StoreError(
            f"s3://{self._store.location.bucket}/{key}: store computed {answered} {echoed},"
            f" the bytes sent have {ours}; object removed, nothing recorded"
        )

    def _send_parts(
        self, transfer: _Transfer, upload_id: str, listed: dict[int, _ListedPart]
    ) -> list[_SentPart]:
        """Read parts in order (hashing the whole file) and hand each to the part pool.

        Raises:
            SourceError: the file shrank or grew while being read.
            DigestMismatchError: the bytes read do not hash to `transfer.hex_digest`.
        """
        path, size, part_size = transfer.path, transfer.size, transfer.part_size
        hasher = hashlib.sha256()
        futures: list[Future[_SentPart]] = []
        failures: list[BaseException] = []

        def note_failure(future: Future[_SentPart]) -> None:
            if (error := future.exception()) is not None:
                failures.append(error)

        try:
            with _open_for_read(path) as stream:
                for number, offset in enumerate(range(0, size, part_size), start=1):
                    length = min(part_size, size - offset)
                    data = self._buffers.take(length, transfer.priority)
                    checksum = Crc32()
                    try:
                        if read_into(stream, data, _Both(hasher.update, checksum)) != length:
                            raise SourceError(f"{path}: shrank while uploading; upload aborted")
                    except BaseException:
                        self._buffers.give(data)
                        raise
                    part = _PartJob(
                        transfer, upload_id, number, data, checksum.base64(), listed.get(number)
                    )
                    future = self._pool.submit(self._send_part, part)
                    future.add_done_callback(note_failure)
                    futures.append(future)
                    if failures:
                        raise failures[0]
                if stream.read(1):
                    raise SourceError(f"{path}: grew while uploading; upload aborted")
        finally:
            wait(futures)
        if hasher.hexdigest() != transfer.hex_digest:
            raise DigestMismatchError(
                f"{path}: changed since it was hashed (now sha256:{hasher.hexdigest()});"
                " upload aborted, nothing written under the final key"
            )
        return [future.result() for future in futures]

    def _send_part(self, part: _PartJob) -> _SentPart:
        try:
            checksum = part.checksum_crc32
            if part.listed is not None:
                if not part.listed.holds(part.data, checksum):
                    raise _StaleUpload(part.number)
                part.transfer.advance(len(part.data))
                return _SentPart(part.number, part.listed.etag, checksum, 0)
            key = part.transfer.key
            with s3_errors(f"uploading part {part.number} of {key}"):
                response = with_backoff(
                    lambda: self._store.client.upload_part(
                        Bucket=self._store.location.bucket,
                        Key=key,
                        UploadId=part.upload_id,
                        PartNumber=part.number,
                        Body=part.data,
                        **self._store.checksums(ChecksumAlgorithm="CRC32", ChecksumCRC32=checksum),
                    )
                )
            echoed = response.get("ChecksumCRC32")
            if echoed and echoed != checksum:
                raise StoreError(f"part {part.number} of {key}: store recorded checksum {echoed}")
            part.transfer.advance(len(part.data))
            return _SentPart(part.number, str(response["ETag"]), checksum, len(part.data))
        finally:
            self._buffers.give(part.data)

    def _resume_or_create(self, key: str, hex_digest: str) -> tuple[str, dict[int, _ListedPart]]:
        pending = sorted(
            (item for item in self._pending_uploads(key) if item["Key"] == key),
            key=lambda item: item["Initiated"],
        )
        for stale in pending[:-1]:
            self._abort(key, str(stale["UploadId"]))
        if pending:
            upload_id = str(pending[-1]["UploadId"])
            return upload_id, self._list_parts(key, upload_id)
        return self._create(key, hex_digest), {}

    def _create(self, key: str, hex_digest: str) -> str:
        with s3_errors(f"starting upload of {key}"):
            created = self._store.client.create_multipart_upload(
                Bucket=self._store.location.bucket,
                Key=key,
                **self._store.checksums(ChecksumAlgorithm="CRC32"),
                Metadata={"sha256": hex_digest},
            )
        return str(created["UploadId"])

    def _pending_uploads(self, key: str) -> list[dict[str, Any]]:
        """Incomplete uploads for `key`, from one listing of the whole store made on first use."""
        with self._pending_lock:
            if self._pending is None:
                self._pending = self._list_pending_uploads()
            return self._pending.pop(key, [])

    def _list_pending_uploads(self) -> dict[str, list[dict[str, Any]]]:
        bucket = self._store.location.bucket
        prefix = self._store.location.key("sha256/")
        by_key: dict[str, list[dict[str, Any]]] = {}
        try:
            pages = self._store.client.get_paginator("list_multipart_uploads").paginate(
                Bucket=bucket, Prefix=prefix
            )
            for page in pages:
                for item in page.get("Uploads", []):
                    by_key.setdefault(str(item["Key"]), []).append(item)
        except ClientError as err:
            # gofakes3 (rclone serve s3) answers an empty listing with NoSuchUpload.
            if err.response.get("Error", {}).get("Code") != "NoSuchUpload":
                raise StoreError(f"listing incomplete uploads: {describe_error(err)}") from err
        except BotoCoreError as err:
            raise StoreError(f"listing incomplete uploads: {describe_error(err)}") from err
        return by_key

    def _list_parts(self, key: str, upload_id: str) -> dict[int, _ListedPart]:
        parts: dict[int, _ListedPart] = {}
        with s3_errors(f"listing uploaded parts of {key}"):
            pages = self._store.client.get_paginator("list_parts").paginate(
                Bucket=self._store.location.bucket, Key=key, UploadId=upload_id
            )
            for page in pages:
                for item in page.get("Parts", []):
                    parts[int(item["PartNumber"])] = _ListedPart(
                        str(item["ETag"]), int(item["Size"]), item.get("ChecksumCRC32")
                    )
        return parts

    def _abort(self, key: str, upload_id: str) -> None:
        with s3_errors(f"aborting upload of {key}"):
            self._store.client.abort_multipart_upload(
                Bucket=self._store.location.bucket, Key=key, UploadId=upload_id
            )


def _open_for_read(path: Path) -> io.FileIO:
    try:
        return io.FileIO(path, "rb")
    except OSError as err:
        raise SourceError(f"{path}: cannot read: {err.strerror or err}") from err
