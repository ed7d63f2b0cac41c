"""A file the kubelet may swap at any time (a mounted ConfigMap or Secret), parsed again when it
changes: its inode, size or mtime (a volume update swaps a symlink, so the inode changes)."""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Generic, TypeVar

T = TypeVar("T")


class Watched(Generic[T]):
    """`path` parsed by `parse`, again whenever it changes. While it is absent or does not
    parse, `current()` gives `fallback` (None: the last good value, so a table the gateway
    routes by never disappears with a bad write)."""

    def __init__(self, path: Path, parse: Callable[[str], T], fallback: T | None = None) -> None:
        self._path = path
        self._parse = parse
        self._fallback = fallback
        self._lock = threading.Lock()
        self._seen: tuple[int, int, int] | None = None
        self._value: T | None = fallback

    def current(self) -> T | None:
        """The parsed content; the fallback (or last good value) when it cannot be read."""
        try:
            stat = os.stat(self._path)
        except OSError:
            return self._fallback if self._fallback is not None else self._value
        seen = (stat.st_ino, stat.st_size, stat.st_mtime_ns)
        with self._lock:
            if seen != self._seen:
                self._seen = seen
                try:
                    self._value = self._parse(self._path.read_text())
                except (OSError, ValueError):
                    if self._fallback is not None:
                        self._value = self._fallback
            return self._value
