"""SHA-256 digests in the `sha256:<hex>` form used by manifests, Ollama and OCI."""

from __future__ import annotations

import base64
import hashlib
import io
import re
from collections.abc import Callable
from pathlib import Path
from typing import Final

from isal.isal_zlib import crc32

from llamafleet.modelsync.buffers import READ_SLICE, read_into
from llamafleet.modelsync.errors import ModelSyncError

_DIGEST_RE: Final = re.compile(r"^sha256:([0-9a-f]{64})$")


def parse_digest(text: str) -> str:
    """The hex part of `sha256:<64 hex>`; raises ModelSyncError on anything else.

    Raises:
        ModelSyncError: `text` is not `sha256:` and 64 hex digits (case and surrounding
            whitespace are ignored).
    """
    match = _DIGEST_RE.match(text.strip().lower())
    if match is None:
        raise ModelSyncError(f"invalid digest {text!r}: expected sha256:<64 hex digits>")
    return match.group(1)


def format_digest(hex_digest: str) -> str:
    """`sha256:<hex>` for a hex SHA-256 digest (not checked)."""
    return f"sha256:{hex_digest}"


def sha256_base64(data: bytes | bytearray | memoryview) -> str:
    """Base64 SHA-256, the form of S3's x-amz-checksum-sha256."""
    return base64.b64encode(hashlib.sha256(data).digest()).decode("ascii")


class Crc32:
    """A running CRC32 (zlib's polynomial). ISA-L's, not zlib's: it runs at several times zlib's
    speed, and one is computed over every byte uploaded."""

    def __init__(self) -> None:
        self.value = 0

    def update(self, data: bytes | bytearray | memoryview) -> None:
        """Extend the running CRC32 over `data`."""
        self.value = crc32(data, self.value)

    def base64(self) -> str:
        """Big-endian, base64: the form of S3's x-amz-checksum-crc32."""
        return base64.b64encode(self.value.to_bytes(4, "big")).decode("ascii")


def crc32_base64(data: bytes | bytearray | memoryview) -> str:
    """CRC32 of `data`, big-endian, base64: the form of S3's x-amz-checksum-crc32."""
    checksum = Crc32()
    checksum.update(data)
    return checksum.base64()


def hex_to_base64(hex_digest: str) -> str:
    """A hex SHA-256 digest as base64 of its 32 bytes: the form of S3's x-amz-checksum-sha256."""
    return base64.b64encode(bytes.fromhex(hex_digest)).decode("ascii")


def hash_file(path: Path, on_bytes: Callable[[int], None] | None = None) -> str:
    """Hex SHA-256 of a file, read a cache-sized slice at a time into one reused buffer."""
    hasher = hashlib.sha256()
    buffer = bytearray(READ_SLICE)
    with io.FileIO(path, "rb") as stream:
        while count := read_into(stream, buffer, hasher.update):
            if on_bytes is not None:
                on_bytes(count)
    return hasher.hexdigest()
