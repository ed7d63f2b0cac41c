"""Reusable part buffers under a byte budget.

Reading each part into a fresh `bytes` costs a new mapping per part: page faults and kernel
zeroing for every byte, on top of the copy from the page cache. Parts are read into buffers that
are handed back and reused instead. Buffers in use plus buffers kept for reuse never exceed the
budget's capacity (or one part, when a single part is larger than the whole budget).
"""

from __future__ import annotations

import io
import threading
from collections.abc import Callable
from typing import Final

from llamafleet.modelsync.budget import ByteBudget

# Bytes read per call: small enough that what was just read is still in the core's cache when
# `on_slice` hashes it.
READ_SLICE: Final = 1 << 20


class PartBuffers:
    """Part buffers, kept by size for reuse, under a ByteBudget of `capacity` bytes.

    Safe to share between threads: `take` in reader threads, `give` in the senders.
    """

    def __init__(self, capacity: int) -> None:
        self._budget = ByteBudget(capacity)
        self._free: dict[int, list[bytearray]] = {}
        self._free_bytes = 0
        self._lock = threading.Lock()

    @property
    def held_bytes(self) -> int:
        """Bytes of buffers handed out by `take` and not given back yet."""
        return self._budget.held

    @property
    def kept_bytes(self) -> int:
        """Bytes of buffers given back and kept for reuse."""
        with self._lock:
            return self._free_bytes

    def take(self, size: int, priority: int = 0) -> bytearray:
        """A buffer of exactly `size` bytes, once the budget allows; contents are stale."""
        self._budget.acquire(size, priority)
        with self._lock:
            kept = self._free.get(size)
            if kept:
                self._free_bytes -= size
                return kept.pop()
            self._evict(self._budget.held + self._free_bytes - self._budget.capacity)
        return bytearray(size)

    def give(self, buffer: bytearray) -> None:
        """Hand back a buffer from `take`: it is kept for reuse, its bytes return to the budget."""
        with self._lock:
            self._free.setdefault(len(buffer), []).append(buffer)
            self._free_bytes += len(buffer)
        self._budget.release(len(buffer))

    def _evict(self, excess: int) -> None:
        while excess > 0 and self._free_bytes:
            size = next(size for size, kept in self._free.items() if kept)
            self._free[size].pop()
            self._free_bytes -= size
            excess -= size


def read_into(
    stream: io.RawIOBase,
    buffer: bytearray,
    on_slice: Callable[[memoryview], None] | None = None,
) -> int:
    """Fill `buffer` from `stream`, handing each slice read to `on_slice`, in order; fewer bytes
    only at end of file."""
    view = memoryview(buffer)
    filled = 0
    while filled < len(buffer):
        count = stream.readinto(view[filled : filled + READ_SLICE])
        if not count:
            break
        if on_slice is not None:
            on_slice(view[filled : filled + count])
        filled += count
    return filled
