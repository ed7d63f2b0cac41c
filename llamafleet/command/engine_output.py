"""What the engine prints, as a platform engineer wants to read it.

The engine's output is shown as it comes, except a Python traceback from a dynamic provider
(Pulumi's dynamic provider host reports every exception with its traceback): that is shown as its
last line, the error itself, e.g. `error: StoreError: listing s3://models: Unable to locate
credentials`; an error the engine repeats is shown once. Everything, tracebacks included, is also
appended to a log file for the details.
"""

from __future__ import annotations

import os
import re
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import TextIO

_TRACEBACK_START = re.compile(r"^(?P<indent>\s*)error: Traceback \(most recent call last\):$")
# The engine reports a program's error once itself and once more as how the program ended:
# grpc's "Exception calling application: " + the same text where the failed call ends it, the
# engine's "an unhandled error occurred: " + the same text where the program returns it (so
# with a resource transform registered: llamafleet.policy.registered.RegistrationGate).
_REPEAT_PREFIXES = ("Exception calling application: ", "an unhandled error occurred: ")
_CHAINED = ("The above exception was", "During handling of the above exception")
# `pkg.module.SomeError: message` (or a bare `SomeError`): the line a traceback ends with.
_EXCEPTION_LINE = re.compile(r"^(?:[A-Za-z_]\w*\.)*(?P<name>[A-Za-z_]\w*)(?::\s?(?P<msg>.*))?$")


class EngineOutput:
    """Line sinks for the Automation API: `stdout` and `stderr` (each read on a thread of its
    own, so each keeps its own traceback state; what they share is locked). Lines are shown
    through `show` and appended to `log`; `errors` holds the error lines shown."""

    def __init__(self, log: Path | None, show: Callable[[str], object] = print) -> None:
        self._show = show
        self._lock = threading.Lock()
        self._file: TextIO | None = None
        if log is not None:
            log.parent.mkdir(parents=True, exist_ok=True)
            self._file = log.open("a")
            self._file.write(f"--- {time.strftime('%Y-%m-%dT%H:%M:%S%z')} pid {os.getpid()}\n")
        self.log = log
        self.errors: list[str] = []
        self.stdout = _Stream(self)
        self.stderr = _Stream(self)

    def record(self, line: str) -> None:
        """Append `line` to the log (when there is one), as the engine printed it."""
        with self._lock:
            if self._file is not None:
                self._file.write(line + "\n")
                self._file.flush()

    def emit(self, line: str) -> None:
        """Show `line`, unless it is an `error:` line already shown (also as the gRPC failure
        that repeats it); each error line shown is kept in `errors`."""
        with self._lock:
            stripped = line.strip()
            if stripped.startswith("error: "):
                error = stripped.removeprefix("error: ")
                for prefix in _REPEAT_PREFIXES:
                    error = error.removeprefix(prefix)
                error = f"error: {error}"
                if error in self.errors:
                    return
                self.errors.append(error)
            self._show(line)

    def close(self) -> None:
        """Show a traceback still being read (the output ended inside it); close the log."""
        self.stdout.end()
        self.stderr.end()
        with self._lock:
            if self._file is not None:
                self._file.close()
                self._file = None


class _Stream:
    """One stream's lines: shown as they come, a traceback collapsed to its exception line."""

    def __init__(self, sink: EngineOutput) -> None:
        self._sink = sink
        self._indent: str | None = None  # inside a traceback when not None
        self._held: str | None = None  # its latest exception line
        self._expect_exception = False

    def __call__(self, line: str) -> None:
        self._sink.record(line)
        self._route(line)

    def _route(self, line: str) -> None:
        if self._indent is None:
            start = _TRACEBACK_START.match(line)
            if start is None:
                self._sink.emit(line)
            else:
                self._indent, self._expect_exception = start["indent"], True
            return
        if line.strip() and not line.startswith(self._indent):
            self.end()  # less indented than the traceback: the engine's output again
            self._route(line)
            return
        body = line.removeprefix(self._indent)
        if not body or body.startswith(_CHAINED):
            return
        if body.startswith("Traceback (most recent call last):") or body[0].isspace():
            self._expect_exception = True  # frames: an exception line comes next
            return
        if self._expect_exception and _EXCEPTION_LINE.match(body.split(": ", 1)[0]):
            self._held, self._expect_exception = body, False
            return
        self.end()  # past the exception line: the engine's output again
        self._route(line)

    def end(self) -> None:
        """Show the collapsed traceback being read, if any."""
        if self._indent is None:
            return
        held, indent = self._held, self._indent
        self._indent, self._held, self._expect_exception = None, None, False
        found = _EXCEPTION_LINE.match(held.split(": ", 1)[0]) if held else None
        if held is None or found is None:
            where = self._sink.log or "the engine log"
            self._sink.emit(f"{indent}error: a dynamic provider failed (traceback in {where})")
            return
        message = held.split(": ", 1)[1] if ": " in held else ""
        self._sink.emit(f"{indent}error: {found['name']}: {message}".rstrip(": "))


def to_stderr(line: str) -> None:
    """A line sink (`show`, `on_output`) that prints to stderr."""
    print(line, file=sys.stderr)
