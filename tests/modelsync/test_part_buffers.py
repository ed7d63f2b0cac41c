"""Part buffers: reused, and never more resident than the budget."""

from __future__ import annotations

import io
import threading
from pathlib import Path

import pytest

from llamafleet.modelsync import buffers as buffers_module
from llamafleet.modelsync.buffers import PartBuffers, read_into


def test_a_given_back_buffer_is_reused_for_the_same_size() -> None:
    buffers = PartBuffers(100)
    first = buffers.take(40)
    buffers.give(first)

    assert buffers.take(40) is first


def test_kept_buffers_are_dropped_to_make_room_for_another_size() -> None:
    buffers = PartBuffers(100)
    small = [buffers.take(30) for _ in range(3)]
    for buffer in small:
        buffers.give(buffer)

    big = buffers.take(80)

    assert len(big) == 80
    assert buffers.kept_bytes + buffers.held_bytes <= 100
    assert buffers.kept_bytes == 0  # 80 + one kept 30 would be over


def test_take_waits_while_the_budget_is_spent() -> None:
    buffers = PartBuffers(100)
    held = buffers.take(70)
    granted = threading.Event()
    waiter = threading.Thread(target=lambda: (buffers.take(50), granted.set()))
    waiter.start()

    assert not granted.wait(0.2)
    buffers.give(held)
    assert granted.wait(10)
    waiter.join()


def test_read_into_fills_across_short_reads_and_reports_end_of_file() -> None:
    class Trickle(io.RawIOBase):
        def __init__(self, data: bytes) -> None:
            self._data = data

        def readable(self) -> bool:
            return True

        def readinto(self, buffer: memoryview) -> int:  # type: ignore[override]
            count = min(3, len(buffer), len(self._data))
            buffer[:count] = self._data[:count]
            self._data = self._data[count:]
            return count

    buffer = bytearray(8)
    assert read_into(Trickle(b"abcdefghij"), buffer) == 8
    assert buffer == b"abcdefgh"
    assert read_into(Trickle(b"xyz12"), buffer) == 5
    assert buffer[:5] == b"xyz12"


def test_read_into_hands_every_slice_to_on_slice_in_order(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(buffers_module, "READ_SLICE", 4)
    path = tmp_path / "data"
    path.write_bytes(b"0123456789abcdefghij")
    seen: list[bytes] = []
    buffer = bytearray(14)

    with io.FileIO(path, "rb") as stream:
        assert read_into(stream, buffer, lambda piece: seen.append(bytes(piece))) == 14
        assert read_into(stream, buffer, lambda piece: seen.append(bytes(piece))) == 6

    assert seen == [b"0123", b"4567", b"89ab", b"cd", b"efgh", b"ij"]
