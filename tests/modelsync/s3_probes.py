"""Observers attached to a test's S3 client."""

from __future__ import annotations


class RequestLog:
    """Records S3 operation names a client sends (after botocore retries, each attempt)."""

    def __init__(self) -> None:
        self.calls: list[str] = []

    def record(self, event_name: str, **_: object) -> None:
        self.calls.append(event_name.rsplit(".", 1)[-1])

    def count(self, *operations: str) -> int:
        return sum(1 for call in self.calls if call in operations)
