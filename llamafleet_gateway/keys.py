"""Team keys at the gateway: only their SHA-256 hashes, from a file that may change at any time.

The file is a JSON object `{"<hex sha256 of a key>": "<team>"}`, mounted from a Secret: when the
team's named keys change, the kubelet rewrites it and the next request sees the new set, with no
restart of the gateway or of any model server.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from llamafleet_gateway.watched import Watched


def key_hash(key: str) -> str:
    """The hex SHA-256 of a key, as the hashes file holds it. Keys are 48 random letters and
    digits (`llamafleet.components.api_keys`), so an unsalted hash cannot be searched."""
    return hashlib.sha256(key.encode()).hexdigest()


def _parse(text: str) -> dict[str, str]:
    loaded = json.loads(text)
    if not isinstance(loaded, dict):
        raise ValueError("the key hashes are not a JSON object")
    return {str(h): str(t) for h, t in loaded.items()}


class KeyTable:
    """Which team a key belongs to, from the hashes file at `path`, re-read when it changes;
    nobody while it is absent or unreadable (fail closed)."""

    def __init__(self, path: Path) -> None:
        self._file = Watched(path, _parse, fallback={})

    def team_of(self, key: str) -> str | None:
        """The team whose key `key` is; None for an unknown key, or while the file is absent
        or unreadable."""
        return (self._file.current() or {}).get(key_hash(key))
