"""Files with no cached digest are hashed smallest first, so uploads start early."""

from __future__ import annotations

from pathlib import Path

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
