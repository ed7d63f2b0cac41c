"""The model fetcher's Prometheus metrics, served over HTTP while `modelsync fetch` runs.

kube-state-metrics does not export an init container's exit code, so the fetcher says itself why
it fails: a PodMonitor scrapes its `fetch-metrics` port while the pod is in Init (Prometheus'
Kubernetes discovery lists init containers' ports too). Exposition format 0.0.4 (plain text),
written here with the standard library: the fetcher image installs no Prometheus client.

- `llamafleet_model_fetch_failures_total{reason}` (counter): failed attempts by reason
  (`failures.REASONS`, each exported from 0 so the first failure is an increase);
- `llamafleet_model_fetch_in_progress` (gauge): 1 while the fetcher runs.
"""

from __future__ import annotations

import threading
from collections.abc import Generator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Final

from llamafleet.modelsync.failures import REASONS, FailureReason

FAILURES: Final = "llamafleet_model_fetch_failures_total"
IN_PROGRESS: Final = "llamafleet_model_fetch_in_progress"
METRICS_PATH: Final = "/metrics"
CONTENT_TYPE: Final = "text/plain; version=0.0.4; charset=utf-8"
# Every interface: the pod's IP is what Prometheus scrapes.
ALL_INTERFACES: Final = "0.0.0.0"  # noqa: S104 (a pod's own network namespace)


class FetchMetrics:
    """The failure counters (one per reason, from 0) of one fetcher process; thread-safe."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._failures: dict[FailureReason, int] = dict.fromkeys(REASONS, 0)

    def record(self, reason: FailureReason) -> None:
        """Count one failed attempt for `reason`."""
        with self._lock:
            self._failures[reason] += 1

    def failures(self) -> dict[FailureReason, int]:
        """Failed attempts so far, by reason (every reason, 0 where none)."""
        with self._lock:
            return dict(self._failures)

    def exposition(self) -> str:
        """The metrics in Prometheus' text format 0.0.4 (module docstring), newline-ended."""
        lines = [
            f"# HELP {FAILURES} Failed attempts to fetch the pod's model, by reason.",
            f"# TYPE {FAILURES} counter",
            *(f'{FAILURES}{{reason="{r}"}} {n}' for r, n in self.failures().items()),
            f"# HELP {IN_PROGRESS} 1 while the model fetcher runs.",
            f"# TYPE {IN_PROGRESS} gauge",
            f"{IN_PROGRESS} 1",
        ]
        return "\n".join(lines) + "\n"


class _MetricsServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, address: tuple[str, int], metrics: FetchMetrics) -> None:
        super().__init__(address, _MetricsHandler)
        self.metrics = metrics


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
    metrics: FetchMetrics, port: int | None, host: str = ALL_INTERFACES
) -> Generator[int | None]:
    """Serve `metrics` at http://`host`:`port`/metrics, from a background thread, until the
    block ends; yields the port bound (`port` 0: one the system picks), None when `port` is None
    (nothing served). A port that cannot be bound (taken, or below 1024 without the
    privilege) is an OSError, before anything is served.
    """
    if port is None:
        yield None
        return
    server = _MetricsServer((host, port), metrics)
    thread = threading.Thread(target=server.serve_forever, name="fetch-metrics", daemon=True)
    thread.start()
    try:
        yield int(server.server_address[1])
    finally:
        server.shutdown()
        server.server_close()
