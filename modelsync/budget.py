"""A memory budget in bytes, shared by threads that hold file parts in memory."""

from __future__ import annotations

import threading
from collections.abc import Generator
from contextlib import contextmanager


class ByteBudget:
    """Blocks `acquire(n)` until n bytes fit under the capacity.

    A request larger than the whole capacity is granted alone (when nothing else is held), so
    one huge part cannot deadlock; memory then peaks at that one part.
    """

    def __init__(self, capacity: int) -> None:
        if capacity <= 0:
            raise ValueError("capacity must be positive")
        self.capacity = capacity
        self._held = 0
        self._changed = threading.Condition()

    def acquire(self, size: int) -> None:
        with self._changed:
            self._changed.wait_for(lambda: self._held == 0 or self._held + size <= self.capacity)
            self._held += size

    def release(self, size: int) -> None:
        with self._changed:
            self._held -= size
            self._changed.notify_all()

    @contextmanager
    def hold(self, size: int) -> Generator[None]:
        self.acquire(size)
        try:
            yield
        finally:
            self.release(size)
