"""SHA-256 digests in the `sha256:<hex>` form used by manifests, Ollama and OCI."""

from __future__ import annotations

import base64
import hashlib
import os
import re
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import Final

from modelsync.errors import ModelSyncError

_DIGEST_RE: Final = re.compile(r"^sha256:([0-9a-f]{64})$")
HASH_CHUNK: Final = 8 << 20


def parse_digest(text: str) -> str:
    """The hex part of `sha256:<64 hex>`; raises ModelSyncError on anything else."""
    match = _DIGEST_RE.match(text.strip().lower())
    if match is None:
        raise ModelSyncError(f"invalid digest {text!r}: expected sha256:<64 hex digits>")
    return match.group(1)


def format_digest(hex_digest: str) -> str:
    return f"sha256:{hex_digest}"


def sha256_base64(data: bytes | bytearray | memoryview) -> str:
    """Base64 SHA-256, the form of S3's x-amz-checksum-sha256."""
    return base64.b64encode(hashlib.sha256(data).digest()).decode("ascii")


def crc32_base64(data: bytes | bytearray) -> str:
    """Base64 big-endian CRC32, the form of S3's x-amz-checksum-crc32."""
    return base64.b64encode(zlib.crc32(data).to_bytes(4, "big")).decode("ascii")


def hex_to_base64(hex_digest: str) -> str:
    return base64.b64encode(bytes.fromhex(hex_digest)).decode("ascii")


def hash_file(path: Path, on_bytes: Callable[[int], None] | None = None) -> str:
    """Hex SHA-256 of a file, read in large chunks into one reused buffer."""
    hasher = hashlib.sha256()
    buffer = bytearray(HASH_CHUNK)
    view = memoryview(buffer)
    fd = os.open(path, os.O_RDONLY)
    try:
        while count := os.readv(fd, [buffer]):
            hasher.update(view[:count])
            if on_bytes is not None:
                on_bytes(count)
    finally:
        os.close(fd)
    return hasher.hexdigest()
