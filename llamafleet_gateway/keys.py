"""Team keys at the gateway: only their SHA-256 hashes, from a file that may change at any time.

The file is a JSON object `{"<hex sha256 of a key>": "<team>"}`, mounted from a Secret: when the
team's named keys change, the kubelet rewrites it and the next request sees the new set, with no
restart of the gateway or of any model server.
"""

from __future__ import annotations

import hashlib
import json
import os
import threading
from pathlib import Path


def key_hash(key: str) -> str:
    """The hex SHA-256 of a key, as the hashes file holds it. Keys are 48 random letters and
    digits (`llamafleet.components.api_keys`), so an unsalted hash cannot be searched."""
    return hashlib.sha256(key.encode()).hexdigest()


class KeyTable:
    """Which team a key belongs to, from the hashes file at `path`, re-read when it changes
    (its inode, size or mtime; a Secret update swaps a symlink, so the inode changes)."""

    def __init__(self, path: Path) -> None:
        self._path = path
        self._lock = threading.Lock()
        self._seen: tuple[int, int, int] | None = None
        self._teams: dict[str, str] = {}

    def team_of(self, key: str) -> str | None:
        """The team whose key `key` is; None for an unknown key, or while the file is absent
        or unreadable (fail closed)."""
        return self._current().get(key_hash(key))

    def _current(self) -> dict[str, str]:
        try:
            stat = os.stat(self._path)
        except OSError:
            return {}
        seen = (stat.st_ino, stat.st_size, stat.st_mtime_ns)
        with self._lock:
            if seen != self._seen:
                try:
                    loaded = json.loads(self._path.read_text())
                    self._teams = {str(h): str(t) for h, t in loaded.items()}
                except (OSError, ValueError, AttributeError):
                    self._teams = {}
                self._seen = seen
            return self._teams
