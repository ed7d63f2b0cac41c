"""What the engine prints, as a platform engineer wants to read it.

The engine's output is shown as it comes, except a Python traceback from a dynamic provider
(Pulumi's dynamic provider host reports every exception with its traceback): that is shown as its
last line, the error itself, e.g. `error: StoreError: listing s3://models: Unable to locate
credentials`; an error the engine repeats is shown once. Everything, tracebacks included, also
goes to a log file for the details.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TextIO

_TRACEBACK_START = re.compile(r"^(?P<indent>\s*)error: Traceback \(most recent call last\):$")
_GRPC_PREFIX = "Exception calling application: "
_CHAINED = ("The above exception was", "During handling of the above exception")
# `pkg.module.SomeError: message` at the start of a line: the exception a traceback ends with.
_EXCEPTION_LINE = re.compile(r"^(?:[A-Za-z_][\w]*\.)*(?P<name>[A-Za-z_]\w*)(?::\s?(?P<msg>.*))?$")


class EngineOutput:
    """A line sink for the Automation API's on_output/on_error: shows each line through `show`
    (tracebacks collapsed to their error) and keeps every line in `log`. `errors` holds the
    error lines shown."""

    def __init__(self, log: Path | None, show: Callable[[str], object] = print) -> None:
        self._show = show
        self._file: TextIO | None = None
        if log is not None:
            log.parent.mkdir(parents=True, exist_ok=True)
            self._file = log.open("w")
        self.log = log
        self.errors: list[str] = []
        self._indent: str | None = None  # inside a traceback when not None
        self._held: str | None = None  # the last exception line seen in it
        self._expect_exception = False

    def __call__(self, line: str) -> None:
        if self._file is not None:
            self._file.write(line + "\n")
            self._file.flush()
        self._route(line)

    def _route(self, line: str) -> None:
        if self._indent is None:
            start = _TRACEBACK_START.match(line)
            if start is None:
                self._emit(line)
            else:
                self._indent, self._expect_exception = start["indent"], True
            return
        body = line.removeprefix(self._indent)
        if not body or body.startswith(_CHAINED):
            return
        if body.startswith("Traceback (most recent call last):") or body[0].isspace():
            self._expect_exception = True  # frames: an exception line comes next
            return
        if self._expect_exception:
            self._held, self._expect_exception = body, False
            return
        self._flush()  # the traceback is over: this line is the engine's again
        self._route(line)

    def _flush(self) -> None:
        held, indent = self._held, self._indent or ""
        self._indent = self._held = None
        if held is not None:
            found = _EXCEPTION_LINE.match(held)
            name = found["name"] if found else "Error"
            message = found["msg"] if found and found["msg"] is not None else ""
            self._emit(f"{indent}error: {name}: {message}".rstrip(": "))

    def _emit(self, line: str) -> None:
        stripped = line.strip()
        if stripped.startswith("error: "):
            # The engine reports a program's error once itself and once more as the failed
            # gRPC call it ended (grpc's "Exception calling application: " + the same text).
            error = "error: " + stripped.removeprefix("error: ").removeprefix(_GRPC_PREFIX)
            if error in self.errors:
                return
            self.errors.append(error)
        self._show(line)

    def close(self) -> None:
        """Show a traceback still being read (the output ended inside it); close the log."""
        if self._indent is not None:
            self._flush()
        if self._file is not None:
            self._file.close()
            self._file = None


def to_stderr(line: str) -> None:
    print(line, file=sys.stderr)
