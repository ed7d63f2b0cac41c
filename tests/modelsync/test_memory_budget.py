"""The byte budget that bounds memory during uploads."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest
from support.synthetic_gguf import GgufSpec, write_gguf

from llamafleet.modelsync.budget import ByteBudget
from llamafleet.modelsync.hashcache import HashCache
from llamafleet.modelsync.plan import plan_sync
from llamafleet.modelsync.sources import discover_files
from llamafleet.modelsync.store import RemoteStore
from llamafleet.modelsync.sync import SyncTuning, run_sync


def test_acquire_waits_until_bytes_are_released() -> None:
    budget = ByteBudget(10)
    budget.acquire(8)
    granted = threading.Event()
    waiter = threading.Thread(target=lambda: (budget.acquire(5), granted.set()))
    waiter.start()

    assert not granted.wait(0.2)
    budget.release(8)
    assert granted.wait(10)
    waiter.join()


def test_request_larger_than_capacity_is_granted_alone() -> None:
    budget = ByteBudget(10)
    budget.acquire(25)
    budget.release(25)
    budget.acquire(1)
    granted = threading.Event()
    waiter = threading.Thread(target=lambda: (budget.acquire(25), granted.set()))
    waiter.start()
    assert not granted.wait(0.2)
    budget.release(1)
    assert granted.wait(10)
    waiter.join()


def test_lower_priority_number_is_served_first() -> None:
    budget = ByteBudget(10)
    budget.acquire(10)
    order: list[str] = []

    def wait_for_bytes(name: str, priority: int) -> None:
        budget.acquire(10, priority)
        order.append(name)
        budget.release(10)

    later = threading.Thread(target=wait_for_bytes, args=("second file", 5))
    earlier = threading.Thread(target=wait_for_bytes, args=("first file", 1))
    later.start()
    while len(budget._waiting) < 1:
        threading.Event().wait(0.01)
    earlier.start()
    while len(budget._waiting) < 2:
        threading.Event().wait(0.01)
    budget.release(10)
    later.join(10)
    earlier.join(10)

    assert order == ["first file", "second file"]


def test_non_positive_capacity_is_refused() -> None:
    with pytest.raises(ValueError, match="positive"):
        ByteBudget(0)


class PeakTrackingBudget(ByteBudget):
    peak = 0

    def acquire(self, size: int, priority: int = 0) -> None:
        super().acquire(size, priority)
        with self._changed:
            PeakTrackingBudget.peak = max(PeakTrackingBudget.peak, self._held)


@pytest.mark.s3
def test_sync_never_holds_more_part_bytes_than_the_budget(
    tmp_path: Path, store: RemoteStore, cache: HashCache, monkeypatch: pytest.MonkeyPatch
) -> None:
    part = 5 << 20
    for index in range(3):
        spec = GgufSpec(tensor_bytes=4 * part, fill=bytes([index + 1]))
        write_gguf(tmp_path / "models" / f"m{index}.gguf", spec)
    monkeypatch.setattr("llamafleet.modelsync.buffers.ByteBudget", PeakTrackingBudget)
    PeakTrackingBudget.peak = 0
    tuning = SyncTuning(part_size=part, part_workers=8, memory_budget=2 * part, files_in_parallel=3)

    result = run_sync(
        plan_sync(discover_files(tmp_path / "models"), store, cache), store, tuning=tuning
    )

    assert result.bytes_uploaded == sum(p.stat().st_size for p in (tmp_path / "models").iterdir())
    assert 0 < PeakTrackingBudget.peak <= 2 * part
