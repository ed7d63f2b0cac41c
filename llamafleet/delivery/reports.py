"""What a workflow's jobs leave for the comment and drift steps: one directory per stack.

`<reports>/<stack>/` holds, each file optional:

- `render.json`: `render-diff`'s output (base against head);
- `render-error.txt`: why a render failed;
- `preview.out`, `preview.err`, `preview.rc`: `capture`'s record of `llamafleet preview`.

A file that is missing means that step did not run or did not finish (a skipped or failed job).
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from llamafleet.delivery.errors import DeliveryError
from llamafleet.delivery.render_diff import RenderDiff

RENDER_DIFF = "render.json"
RENDER_ERROR = "render-error.txt"
PREVIEW = "preview"


@dataclass(frozen=True)
class Capture:
    """One command's stdout, stderr and exit status."""

    out: str
    err: str
    rc: int


@dataclass(frozen=True)
class StackReport:
    """Everything the jobs recorded for one stack."""

    stack: str
    render: RenderDiff | None
    render_error: str | None
    preview: Capture | None

    @property
    def drifted(self) -> bool:
        """`llamafleet preview --expect-no-changes` found changes (exit 1 and its drift line;
        exit 1 alone may be bad settings or a policy violation)."""
        return (
            self.preview is not None
            and self.preview.rc == 1
            and f"drift: {self.stack} would change" in self.preview.err
        )


def _read(path: Path) -> str | None:
    try:
        return path.read_text(encoding="utf-8", errors="replace")
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise DeliveryError(f"{path}: {exc.strerror or exc}") from None


def load_capture(directory: Path, name: str) -> Capture | None:
    """What `capture --name NAME` wrote in `directory`; None when it wrote nothing.

    Raises:
        DeliveryError: the exit status file holds no number.
    """
    rc_text = _read(directory / f"{name}.rc")
    if rc_text is None:
        return None
    try:
        rc = int(rc_text.strip())
    except ValueError:
        raise DeliveryError(f"{directory / name}.rc: not an exit status: {rc_text!r}") from None
    return Capture(
        _read(directory / f"{name}.out") or "", _read(directory / f"{name}.err") or "", rc
    )


def load_report(reports: Path, stack: str) -> StackReport:
    """The stack's directory under `reports` (absent: nothing recorded)."""
    directory = reports / stack
    render_text = _read(directory / RENDER_DIFF)
    return StackReport(
        stack,
        None
        if render_text is None
        else RenderDiff.from_json(render_text, str(directory / RENDER_DIFF)),
        _read(directory / RENDER_ERROR),
        load_capture(directory, PREVIEW),
    )


def capture(directory: Path, name: str, argv: Sequence[str]) -> int:
    """Run `argv`, writing `NAME.out`, `NAME.err` and `NAME.rc` into `directory` and echoing
    both streams to ours (the job's log); returns the command's exit status.

    Raises:
        DeliveryError: the command cannot be started.
    """
    directory.mkdir(parents=True, exist_ok=True)
    try:
        done = subprocess.run(list(argv), capture_output=True, check=False)
    except OSError as exc:
        raise DeliveryError(f"cannot run {argv[0]}: {exc.strerror or exc}") from None
    (directory / f"{name}.out").write_bytes(done.stdout)
    (directory / f"{name}.err").write_bytes(done.stderr)
    (directory / f"{name}.rc").write_text(f"{done.returncode}\n")
    sys.stdout.buffer.write(done.stdout)
    sys.stdout.flush()
    sys.stderr.buffer.write(done.stderr)
    sys.stderr.flush()
    return done.returncode
