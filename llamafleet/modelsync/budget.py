"""A memory budget in bytes, shared by threads that hold file parts in memory."""

from __future__ import annotations

import heapq
import itertools
import threading


class ByteBudget:
    """Blocks `acquire(n)` until n bytes fit under the capacity, serving waiters by priority.

    The lowest `priority` (then the earliest request) goes first, so the file that started first
    finishes first: completions are staggered and overlap other uploads, instead of every file
    finishing together with nothing left to send while the store assembles them.
    A request larger than the whole capacity is granted alone (when nothing else is held), so
    one huge part cannot deadlock; memory then peaks at that one part.
    """

    def __init__(self, capacity: int) -> None:
        if capacity <= 0:
            raise ValueError("capacity must be positive")
        self.capacity = capacity
        self._held = 0
        self._waiting: list[tuple[int, int]] = []  # heap of (priority, ticket)
        self._tickets = itertools.count()
        self._changed = threading.Condition()

    @property
    def held(self) -> int:
        """Bytes acquired and not yet released."""
        with self._changed:
            return self._held

    def acquire(self, size: int, priority: int = 0) -> None:
        """Block until it is this request's turn and `size` bytes fit (or nothing is held),
        then hold them.

        Lower `priority` goes first (default 0), then earlier requests. Give the bytes back
        with `release`.
        """
        with self._changed:
            turn = (priority, next(self._tickets))
            heapq.heappush(self._waiting, turn)
            self._changed.wait_for(
                lambda: (
                    self._waiting[0] == turn
                    and (self._held == 0 or self._held + size <= self.capacity)
                )
            )
            heapq.heappop(self._waiting)
            self._held += size
            self._changed.notify_all()  # the next in line may fit too

    def release(self, size: int) -> None:
        """Give back `size` bytes taken by `acquire`, waking the waiters."""
        with self._changed:
            self._held -= size
            self._changed.notify_all()
