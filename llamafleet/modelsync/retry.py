"""Backoff around a whole S3 call, on top of botocore's per-request retries.

botocore retries one HTTP request; a multipart transfer of many GB must also survive a part that
exhausted those attempts during a long throttling episode, without restarting the file.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from typing import Final, TypeVar

from botocore.exceptions import (
    ClientError,
    ConnectionError,
    HTTPClientError,
    IncompleteReadError,
    ReadTimeoutError,
    ResponseStreamingError,
)

T = TypeVar("T")

RETRYABLE_CODES: Final = frozenset(
    {
        "SlowDown",
        "Throttling",
        "ThrottlingException",
        "RequestTimeout",
        "RequestTimeTooSkewed",
        "InternalError",
        "ServiceUnavailable",
        "500",
        "502",
        "503",
        "504",
    }
)


def is_retryable(err: Exception) -> bool:
    """Whether another attempt may succeed: an S3 error code in RETRYABLE_CODES, an HTTP status
    of 500 or more, or a botocore connection, read-timeout or broken-stream error."""
    if isinstance(err, ClientError):
        error = err.response.get("Error", {})
        status = err.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)
        return str(error.get("Code", "")) in RETRYABLE_CODES or int(status) >= 500
    return isinstance(
        err,
        ConnectionError
        | HTTPClientError
        | ReadTimeoutError
        | ResponseStreamingError
        | IncompleteReadError,
    )


def with_backoff(
    call: Callable[[], T],
    attempts: int = 4,
    base_delay: float = 0.5,
    sleep: Callable[[float], None] = time.sleep,
) -> T:
    """Run `call`, retrying retryable S3 failures with full-jitter exponential backoff.

    Raises:
        AssertionError: `attempts` is below 1, so `call` never ran.
    """
    for attempt in range(1, attempts + 1):
        try:
            return call()
        except Exception as err:
            if attempt == attempts or not is_retryable(err):
                raise
            sleep(random.uniform(0, base_delay * 2**attempt))  # noqa: S311 (jitter, not crypto)
    raise AssertionError("unreachable")
