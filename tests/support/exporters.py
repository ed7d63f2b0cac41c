"""Exporters run as processes on loopback for the metric-name tests: start one, wait until it
answers, read its /metrics."""

from __future__ import annotations

import subprocess
import urllib.request
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

from support.loopback import wait_until_serving

VERSIONS = Path(__file__).resolve().parents[2] / "scripts" / "engine-versions.env"


def pinned(key: str) -> str:
    """A version scripts/engine-versions.env pins (`KEY=value` lines)."""
    for line in VERSIONS.read_text().splitlines():
        name, _, value = line.partition("=")
        if name.strip() == key and not line.startswith("#"):
            return value.strip()
    raise KeyError(f"{key} not in {VERSIONS}")


def reported_version(argv: Sequence[str]) -> str:
    """The first line a binary prints for its version (stdout or stderr)."""
    done = subprocess.run(list(argv), capture_output=True, text=True, check=True, timeout=60)
    return (done.stdout or done.stderr).splitlines()[0]


@contextmanager
def exporting(argv: Sequence[str], url: str, log: Path) -> Iterator[None]:
    """Runs `argv` (output to `log`) until the block ends, once `url` answers."""
    with log.open("wb") as sink:
        process = subprocess.Popen(list(argv), stdout=sink, stderr=subprocess.STDOUT)
    try:
        try:
            wait_until_serving(url, process, Path(argv[0]).name)
        except RuntimeError as error:
            raise AssertionError(f"{error}:\n{log.read_text(errors='replace')}") from error
        yield
    finally:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def scrape(url: str) -> str:
    """The text exposition at `url`."""
    with urllib.request.urlopen(url, timeout=30) as answer:
        return answer.read().decode()
