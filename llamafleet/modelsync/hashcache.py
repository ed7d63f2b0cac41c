"""A local cache of file digests keyed by (path, size, mtime_ns, inode, ctime_ns).

A hit proves, as far as the file system can tell, that the bytes are those hashed before, so an
unchanged multi-GB file is never read again. Any change to the key (a touch, a copy, a rewrite)
is a miss and the file is re-hashed. ctime is in the key because a tool can put mtime back after
rewriting a file in place (same size, same inode), but nothing can set ctime back.
SQLite gives atomic updates when two syncs share the cache.
"""

from __future__ import annotations

import json
import os
import sqlite3
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Final, cast

CACHE_DIR_ENV: Final = "MODELSYNC_CACHE_DIR"
# Entries written by older releases stay hits: a new header check (refusing split shards and
# merged vision towers) runs on files hashed from now on, and a stack deployed before it still
# previews with no change (a new table would make every source look changed after an upgrade).
_SCHEMA: Final = """
CREATE TABLE IF NOT EXISTS file_digest (
    path TEXT PRIMARY KEY,
    size INTEGER NOT NULL,
    mtime_ns INTEGER NOT NULL,
    inode INTEGER NOT NULL,
    ctime_ns INTEGER NOT NULL,
    digest TEXT NOT NULL,
    gguf TEXT NOT NULL
)
"""


def default_cache_dir() -> Path:
    """$MODELSYNC_CACHE_DIR, else `llamafleet/modelsync` under $XDG_CACHE_HOME or ~/.cache."""
    configured = os.environ.get(CACHE_DIR_ENV)
    if configured:
        return Path(configured)
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "llamafleet" / "modelsync"


@dataclass(frozen=True)
class FileIdentity:
    """What the file system says about a file without reading it."""

    path: str
    size: int
    mtime_ns: int
    inode: int
    ctime_ns: int

    @classmethod
    def of(cls, path: Path) -> FileIdentity:
        """The identity of the file `path` resolves to (symlinks followed), without reading it."""
        resolved = path.resolve()
        stat = resolved.stat()
        return cls(str(resolved), stat.st_size, stat.st_mtime_ns, stat.st_ino, stat.st_ctime_ns)


@dataclass(frozen=True)
class CachedDigest:
    """A cached result: the file's hex SHA-256 and its GGUF block (`GgufHeader.to_json()`)."""

    digest: str  # hex
    gguf: dict[str, object]


class HashCache:
    """Digests and GGUF headers of local files, remembered across runs. Safe to share between
    threads: one connection, used by one thread at a time (sqlite3's transactions are per
    connection, so interleaved stores would nest them)."""

    def __init__(self, directory: Path | None = None) -> None:
        self.directory = directory or default_cache_dir()
        self.directory.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(self.directory / "hashes.sqlite", check_same_thread=False)
        self._lock = threading.Lock()
        with self._db:
            self._db.execute(_SCHEMA)

    def lookup(self, identity: FileIdentity) -> CachedDigest | None:
        """The entry stored for exactly this path, size, mtime, inode and ctime; else None."""
        key = (identity.path, identity.size, identity.mtime_ns, identity.inode, identity.ctime_ns)
        with self._lock:
            row = self._db.execute(
                "SELECT digest, gguf FROM file_digest"
                " WHERE path = ? AND size = ? AND mtime_ns = ? AND inode = ? AND ctime_ns = ?",
                key,
            ).fetchone()
        if row is None:
            return None
        digest, gguf_json = cast(tuple[str, str], row)
        return CachedDigest(digest, cast(dict[str, object], json.loads(gguf_json)))

    def store(self, identity: FileIdentity, entry: CachedDigest) -> None:
        """Remember `entry` for `identity`, replacing whatever was stored for its path."""
        with self._lock, self._db:
            self._db.execute(
                "INSERT OR REPLACE INTO file_digest VALUES (?, ?, ?, ?, ?, ?, ?)",
                (
                    identity.path,
                    identity.size,
                    identity.mtime_ns,
                    identity.inode,
                    identity.ctime_ns,
                    entry.digest,
                    json.dumps(entry.gguf, sort_keys=True),
                ),
            )

    def close(self) -> None:
        """Close the SQLite connection; the cache cannot be used afterwards."""
        with self._lock:
            self._db.close()
