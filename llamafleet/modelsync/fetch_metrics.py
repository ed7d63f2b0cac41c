"""The model fetcher's Prometheus metrics, served over HTTP while `modelsync fetch` runs.

kube-state-metrics does not export an init container's exit code, so the fetcher says itself why
it fails: a PodMonitor scrapes its `fetch-metrics` port while the pod is in Init (Prometheus'
Kubernetes discovery lists init containers' ports too). Exposition format 0.0.4 (plain text),
written here with the standard library: the fetcher image installs no Prometheus client.

- `llamafleet_model_fetch_failures_total{reason}` (counter): failed attempts by reason
  (`failures.REASONS`, each exported from 0 so the first failure is an increase);
- `llamafleet_model_fetch_last_attempt_failed{reason}` (gauge): 1 for the reason of the latest
  attempt, when it failed (an attempt that succeeds ends the process), 0 for every other reason.
  What LlamafleetModelFetchFailing watches: it stays 1 through the wait and the next attempt,
  however long a download takes, where a counter's increase over a window would lapse between
  two slow failures and let the alert resolve and fire again;
- `llamafleet_model_fetch_in_progress` (gauge): 1 while the fetcher runs.

It listens on every interface, IPv6 and IPv4 together where the pod has IPv6 (an IPv6-only
cluster scrapes the pod's IPv6 address), IPv4 alone where it has not.
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Generator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Final

from llamafleet.modelsync.failures import REASONS, FailureReason

FAILURES: Final = "llamafleet_model_fetch_failures_total"
LAST_ATTEMPT_FAILED: Final = "llamafleet_model_fetch_last_attempt_failed"
IN_PROGRESS: Final = "llamafleet_model_fetch_in_progress"
METRICS_PATH: Final = "/metrics"
CONTENT_TYPE: Final = "text/plain; version=0.0.4; charset=utf-8"
# Every interface: the pod's IP is what Prometheus scrapes (a pod's own network namespace).
ALL_IPV6: Final = "::"
ALL_IPV4: Final = "0.0.0.0"  # noqa: S104


class FetchMetrics:
    """The failure counters (one per reason, from 0) and the latest attempt's failure of one
    fetcher process; thread-safe."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._failures: dict[FailureReason, int] = dict.fromkeys(REASONS, 0)
        self._last_failed: FailureReason | None = None

    def record(self, reason: FailureReason) -> None:
        """Count one failed attempt for `reason`, now the latest attempt's failure."""
        with self._lock:
            self._failures[reason] += 1
            self._last_failed = reason

    def last_failed(self) -> FailureReason | None:
        """Why the latest attempt failed; None before any failed."""
        with self._lock:
            return self._last_failed

    def failures(self) -> dict[FailureReason, int]:
        """Failed attempts so far, by reason (every reason, 0 where none)."""
        with self._lock:
            return dict(self._failures)

    def exposition(self) -> str:
        """The metrics in Prometheus' text format 0.0.4 (module docstring), newline-ended."""
        last = self.last_failed()
        lines = [
            f"# HELP {FAILURES} Failed attempts to fetch the pod's model, by reason.",
            f"# TYPE {FAILURES} counter",
            *(f'{FAILURES}{{reason="{r}"}} {n}' for r, n in self.failures().items()),
            f"# HELP {LAST_ATTEMPT_FAILED} 1 for the reason the latest attempt failed, else 0.",
            f"# TYPE {LAST_ATTEMPT_FAILED} gauge",
            *(f'{LAST_ATTEMPT_FAILED}{{reason="{r}"}} {int(r == last)}' for r in REASONS),
            f"# HELP {IN_PROGRESS} 1 while the model fetcher runs.",
            f"# TYPE {IN_PROGRESS} gauge",
            f"{IN_PROGRESS} 1",
        ]
        return "\n".join(lines) + "\n"


class _MetricsServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, address: tuple[str, int], metrics: FetchMetrics) -> None:
        if ":" in address[0]:
            self.address_family = socket.AF_INET6
        super().__init__(address, _MetricsHandler)
        self.metrics = metrics

    def server_bind(self) -> None:
        """Bind; an IPv6 wildcard takes IPv4 connections too (mapped), whatever the system's
        `net.ipv6.bindv6only` default."""
        if self.address_family == socket.AF_INET6:
            self.socket.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
        super().server_bind()


class _MetricsHandler(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        """`/metrics`: the exposition; any other path: 404."""
        server = self.server
        if self.path.split("?", 1)[0] != METRICS_PATH or not isinstance(server, _MetricsServer):
            self.send_error(404)
            return
        body = server.metrics.exposition().encode()
        self.send_response(200)
        self.send_header("Content-Type", CONTENT_TYPE)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        """No line per scrape on stderr: the fetcher's log is its own lines."""
        del format, args


@contextmanager
def serving_metrics(
    metrics: FetchMetrics, port: int | None, host: str | None = None
) -> Generator[int | None]:
    """Serve `metrics` at http://`host`:`port`/metrics, from a background thread, until the
    block ends; yields the port bound (`port` 0: one the system picks), None when `port` is None
    (nothing served). Without `host`: every interface, IPv6 and IPv4 where the system has IPv6
    (`socket.has_dualstack_ipv6`), IPv4 alone otherwise. A port that cannot be bound (taken,
    or below 1024 without the privilege) is an OSError, before anything is served.
    """
    if port is None:
        yield None
        return
    if host is None:
        host = ALL_IPV6 if socket.has_dualstack_ipv6() else ALL_IPV4
    server = _MetricsServer((host, port), metrics)
    thread = threading.Thread(target=server.serve_forever, name="fetch-metrics", daemon=True)
    thread.start()
    try:
        yield int(server.server_address[1])
    finally:
        server.shutdown()
        server.server_close()
