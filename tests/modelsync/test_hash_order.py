"""Files with no cached digest are hashed smallest first, so uploads start early."""

from __future__ import annotations

from concurrent.futures import wait as futures_wait
from pathlib import Path
from typing import Any

import pytest

from llamafleet.modelsync import plan
from llamafleet.modelsync.hashcache import HashCache
from llamafleet.modelsync.progress import Advance, NoProgress
from llamafleet.modelsync.sources import ModelSource
from tests.support.synthetic_gguf import GgufSpec, write_gguf


class RecordedTracks(NoProgress):
    def __init__(self) -> None:
        self.descriptions: list[str] = []

    def track(self, description: str, total: int) -> Advance:
        self.descriptions.append(description)
        return super().track(description, total)


def test_pending_files_are_hashed_smallest_first(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(plan, "HASH_WORKERS", 1)  # one worker: the order hashed is the order taken
    sizes = {"big": 64 << 10, "small": 4 << 10, "medium": 16 << 10}
    sources = [
        ModelSource.from_file(write_gguf(tmp_path / f"{name}.gguf", GgufSpec(tensor_bytes=size)))
        for name, size in sizes.items()
    ]
    cache = HashCache(tmp_path / "cache")
    _, pending = plan.identify_locals(sources, cache)
    tracks = RecordedTracks()
    hashed_in_turn: list[str] = []

    plan.hash_pending(
        pending, cache, progress=tracks, on_hashed=lambda s, _: hashed_in_turn.append(s.name)
    )

    assert tracks.descriptions == ["hashing small", "hashing medium", "hashing big"]
    assert hashed_in_turn == ["small", "medium", "big"]


def test_files_hashed_together_are_handed_on_smallest_first(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Where several digests are ready at once (the uploads were slower than the hashing), the
    smallest goes to the uploads first, whatever order the pool reports them in."""
    sizes = {"big": 64 << 10, "small": 4 << 10, "medium": 16 << 10, "tiny": 1 << 10}
    sources = [
        ModelSource.from_file(write_gguf(tmp_path / f"{name}.gguf", GgufSpec(tensor_bytes=size)))
        for name, size in sizes.items()
    ]
    real_wait = plan.wait

    def all_done_first(futures: Any, return_when: str) -> Any:
        futures_wait(futures)  # every file hashed before the first is handed on
        return real_wait(futures, return_when=return_when)

    monkeypatch.setattr(plan, "wait", all_done_first)
    _, pending = plan.identify_locals(sources, HashCache(tmp_path / "cache"))
    handed_on: list[str] = []
    plan.hash_pending(
        pending, HashCache(tmp_path / "cache"), on_hashed=lambda s, _: handed_on.append(s.name)
    )
    assert handed_on == ["tiny", "small", "medium", "big"]
