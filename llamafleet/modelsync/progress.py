"""Progress reporting for long transfers: rich bars on a terminal, nothing otherwise."""

from __future__ import annotations

import sys
from collections.abc import Callable
from types import TracebackType
from typing import Protocol

Advance = Callable[[int], None]


class ProgressSink(Protocol):
    """Receives byte counts for named transfers; must accept calls from worker threads."""

    def track(self, description: str, total: int) -> Advance:
        """Start a transfer of `total` bytes; the returned function takes each count of bytes."""
        ...

    def __enter__(self) -> ProgressSink: ...

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None: ...


class NoProgress:
    """Discards progress: scripts, `--json`, library callers."""

    def track(self, description: str, total: int) -> Advance:
        """A function that ignores the counts it is given."""
        del description, total
        return _ignore

    def __enter__(self) -> NoProgress:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        return None


def _ignore(count: int) -> None:
    del count


class RichProgress:
    """One bar per transfer on stderr."""

    def __init__(self) -> None:
        # Imported here: scripts and init containers never draw bars, so never pay for rich.
        from rich.console import Console  # noqa: PLC0415
        from rich.progress import (  # noqa: PLC0415
            BarColumn,
            DownloadColumn,
            Progress,
            TextColumn,
            TimeRemainingColumn,
            TransferSpeedColumn,
        )

        self._progress = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            DownloadColumn(binary_units=True),
            TransferSpeedColumn(),
            TimeRemainingColumn(),
            console=Console(stderr=True),
        )

    def track(self, description: str, total: int) -> Advance:
        """Add a bar for `total` bytes; the returned function advances it by a count of bytes."""
        task = self._progress.add_task(description, total=total)

        def advance(count: int) -> None:
            self._progress.advance(task, count)

        return advance

    def __enter__(self) -> RichProgress:
        self._progress.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._progress.stop()


def progress_for(json_output: bool) -> ProgressSink:
    """Bars only for a person at a terminal."""
    if json_output or not sys.stderr.isatty():
        return NoProgress()
    return RichProgress()
