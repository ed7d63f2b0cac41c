"""Observers attached to a test's S3 client."""

from __future__ import annotations

from llamafleet.modelsync.store import ENTRIES_DIR, PROBE_NAME


class RequestLog:
    """Records S3 operation names a client sends (after botocore retries, each attempt), and
    the URL of each, so a count can leave out what depends on the store's kind: the
    conditional-write probe and per-model entry objects."""

    def __init__(self) -> None:
        self.calls: list[str] = []
        self.urls: list[str] = []

    def record(self, event_name: str, request: object = None, **_: object) -> None:
        self.calls.append(event_name.rsplit(".", 1)[-1])
        self.urls.append(str(getattr(request, "url", "")))

    def count(self, *operations: str) -> int:
        return sum(1 for call in self.calls if call in operations)

    def count_but_layout(self, *operations: str) -> int:
        """`count`, less requests to the conditional-write probe and to per-model entries."""
        return sum(
            1
            for call, url in zip(self.calls, self.urls, strict=True)
            if call in operations and PROBE_NAME not in url and f"/{ENTRIES_DIR}/" not in url
        )
