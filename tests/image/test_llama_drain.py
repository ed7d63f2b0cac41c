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


# Work done (decode calls) as a function of seconds since the stand-in started: a request
# shorter than the hook's poll leaves no mark on the gauges, only here.
Work = Callable[[float], int]


class _Metrics(BaseHTTPRequestHandler):
    busy: Busy
    work: Work
    status: int
    started: float
    keys_seen: list[str]

    def do_GET(self) -> None:
        self.keys_seen.append(self.headers.get("Authorization", ""))
        if self.status != 200:
            self.send_response(self.status)
            self.end_headers()
            return
        if self.path != "/metrics" or self.headers.get("Authorization") != f"Bearer {KEY}":
            self.send_response(401)
            self.end_headers()
            return
        now = time.monotonic() - self.started
        in_flight = self.busy(now)
        body = (
            "# TYPE llamacpp:prompt_tokens_total counter\n"
            "llamacpp:prompt_tokens_total 100\n"
            "# TYPE llamacpp:n_decode_total counter\n"
            f"llamacpp:n_decode_total {self.work(now)}\n"
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


Serve = Callable[..., tuple[int, list[str]]]


@pytest.fixture
def metrics() -> Iterator[Serve]:
    servers: list[ThreadingHTTPServer] = []

    def serve(busy: Busy, work: Work = lambda t: 7, status: int = 200) -> tuple[int, list[str]]:
        seen: list[str] = []
        fields = {
            "busy": staticmethod(busy),
            "work": staticmethod(work),
            "status": status,
            "keys_seen": seen,
        }
        handler = type("Handler", (_Metrics,), fields)
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
    path.write_text(f"\nrotated-out-key\n{KEY}\n")
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
    payload: Path, metrics: Serve, key_file: Path
) -> None:
    port, seen = metrics(lambda t: 3 if t < 4 else 0)
    took, err, argv = drain(payload, port, key_file, settle=1, quiet=2, longest=60)
    assert "idle after" in err, err
    assert took >= 4 + 2  # busy until 4 s, then idle for 2 s
    assert took < 30  # well before its bound
    # The keys came from the file, as bearer tokens, never in argv: the first line the server
    # refused, the second it took, and the hook kept to that one.
    assert seen[:2] == ["Bearer rotated-out-key", f"Bearer {KEY}"]
    assert set(seen[2:]) == {f"Bearer {KEY}"}
    assert KEY not in " ".join(argv)


def test_it_lets_sigterm_through_at_its_bound_when_requests_never_end(
    payload: Path, metrics: Serve, key_file: Path
) -> None:
    port, _ = metrics(lambda t: 1)
    took, err, _ = drain(payload, port, key_file, settle=0, quiet=1, longest=3)
    assert "1 request(s) still busy after 3 s" in err, err
    assert 3 <= took < 20


def test_an_answer_it_cannot_read_counts_as_busy(
    payload: Path, metrics: Serve, tmp_path: Path
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


def test_without_a_key_file_it_waits_like_a_sleep(payload: Path, tmp_path: Path) -> None:
    argv = [str(payload / "llama-drain"), "8080", str(tmp_path / "absent"), "1", "1", "2"]
    start = time.monotonic()
    done = subprocess.run(argv, capture_output=True, text=True, check=False)
    assert done.returncode == 0
    assert "no key: waiting 2 s" in done.stderr
    assert time.monotonic() - start >= 3  # settle, then the whole bound


def test_requests_shorter_than_a_poll_keep_it_waiting(
    payload: Path, metrics: Serve, key_file: Path
) -> None:
    """The gauges read 0 at every poll, but decode calls keep happening (short requests between
    polls, over open keep-alive connections): that is not idle."""
    port, _ = metrics(lambda t: 0, work=lambda t: int(t * 10) if t < 4 else 40)
    took, err, _ = drain(payload, port, key_file, settle=0, quiet=2, longest=60)
    assert "idle after" in err, err
    assert took >= 4 + 2  # work until 4 s, then quiet for 2 s


def test_a_server_still_loading_has_nothing_to_drain(
    payload: Path, metrics: Serve, key_file: Path
) -> None:
    port, _ = metrics(lambda t: 0, status=503)
    took, err, _ = drain(payload, port, key_file, settle=0, quiet=5, longest=60)
    assert "is loading: nothing to drain" in err, err
    assert took < 5
