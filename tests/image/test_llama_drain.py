"""llama-drain, the pods' preStop hook, as the image's build script compiles it, against a
stand-in /metrics that says what llama-server would: busy, then idle; busy for ever; a wrong key;
nothing listening. (The rollout test, tests/image/test_rollout.py, runs it against real servers.)"""

from __future__ import annotations

import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from support.loopback import free_port

pytestmark = pytest.mark.image

KEY = "internal-key-of-the-team"
# Busy (processing + deferred) as a function of seconds since the stand-in started.
Busy = Callable[[float], int]


class _Metrics(BaseHTTPRequestHandler):
    busy: Busy
    started: float
    keys_seen: list[str]

    def do_GET(self) -> None:
        self.keys_seen.append(self.headers.get("Authorization", ""))
        if self.path != "/metrics" or self.headers.get("Authorization") != f"Bearer {KEY}":
            self.send_response(401)
            self.end_headers()
            return
        in_flight = self.busy(time.monotonic() - self.started)
        body = (
            "# TYPE llamacpp:requests_processing gauge\n"
            f"llamacpp:requests_processing {min(in_flight, 2)}\n"
            "# TYPE llamacpp:requests_deferred gauge\n"
            f"llamacpp:requests_deferred {max(in_flight - 2, 0)}\n"
        ).encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *_: object) -> None:
        pass


@pytest.fixture
def metrics() -> Iterator[Callable[[Busy], tuple[int, list[str]]]]:
    servers: list[ThreadingHTTPServer] = []

    def serve(busy: Busy) -> tuple[int, list[str]]:
        seen: list[str] = []
        handler = type("Handler", (_Metrics,), {"busy": staticmethod(busy), "keys_seen": seen})
        handler.started = time.monotonic()
        server = ThreadingHTTPServer(("127.0.0.1", free_port()), handler)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
        return server.server_address[1], seen

    yield serve
    for server in servers:
        server.shutdown()


@pytest.fixture
def key_file(tmp_path: Path) -> Path:
    path = tmp_path / "keys"
    path.write_text(f"\n{KEY}\nmetrics-key\n")
    return path


def drain(
    payload: Path, port: int, key_file: Path, *, settle: float, quiet: float, longest: float
) -> tuple[float, str, list[str]]:
    """Run the hook; (seconds it took, its stderr, its argv as /proc shows it)."""
    argv = [str(payload / "llama-drain"), str(port), str(key_file)]
    argv += [str(settle), str(quiet), str(longest)]
    start = time.monotonic()
    process = subprocess.Popen(argv, stderr=subprocess.PIPE, text=True)
    shown = Path(f"/proc/{process.pid}/cmdline").read_bytes().decode().split("\0")
    _, err = process.communicate(timeout=120)
    assert process.returncode == 0, err
    return time.monotonic() - start, err, shown


def test_it_waits_for_the_settle_time_then_until_idle_for_the_quiet_time(
    payload: Path, metrics: Callable[[Busy], tuple[int, list[str]]], key_file: Path
) -> None:
    port, seen = metrics(lambda t: 3 if t < 4 else 0)
    took, err, argv = drain(payload, port, key_file, settle=1, quiet=2, longest=60)
    assert "idle after" in err, err
    assert took >= 4 + 2  # busy until 4 s, then idle for 2 s
    assert took < 30  # well before its bound
    # The key came from the file's first non-empty line, as a bearer token, never in argv.
    assert set(seen) == {f"Bearer {KEY}"}
    assert KEY not in " ".join(argv)


def test_it_lets_sigterm_through_at_its_bound_when_requests_never_end(
    payload: Path, metrics: Callable[[Busy], tuple[int, list[str]]], key_file: Path
) -> None:
    port, _ = metrics(lambda t: 1)
    took, err, _ = drain(payload, port, key_file, settle=0, quiet=1, longest=3)
    assert "1 request(s) still busy after 3 s" in err, err
    assert 3 <= took < 20


def test_an_answer_it_cannot_read_counts_as_busy(
    payload: Path, metrics: Callable[[Busy], tuple[int, list[str]]], tmp_path: Path
) -> None:
    port, _ = metrics(lambda t: 0)
    wrong = tmp_path / "wrong"
    wrong.write_text("not-the-key\n")
    took, err, _ = drain(payload, port, wrong, settle=0, quiet=1, longest=3)
    assert "/metrics unreadable for 3 s" in err, err
    assert took >= 3


def test_a_server_that_does_not_listen_has_nothing_to_drain(payload: Path, key_file: Path) -> None:
    took, err, _ = drain(payload, free_port(), key_file, settle=0, quiet=5, longest=60)
    assert "does not listen" in err, err
    assert took < 5


@pytest.mark.parametrize(
    "args",
    [
        [],
        ["8080", "keys", "5", "6"],
        ["0", "keys", "5", "6", "60"],
        ["8080", "keys", "-1", "6", "60"],
    ],
)
def test_bad_arguments_exit_2(payload: Path, args: list[str]) -> None:
    done = subprocess.run(
        [str(payload / "llama-drain"), *args], capture_output=True, text=True, check=False
    )
    assert done.returncode == 2, done.stderr


def test_a_missing_key_file_exits_2(payload: Path, tmp_path: Path) -> None:
    argv = [str(payload / "llama-drain"), "8080", str(tmp_path / "absent"), "0", "1", "1"]
    done = subprocess.run(argv, capture_output=True, text=True, check=False)
    assert done.returncode == 2
    assert "no key" in done.stderr
