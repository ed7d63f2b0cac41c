"""Whole-fetch retries for the model fetcher: with a retry cap, a failed fetch waits and tries
again instead of exiting, so the pod stays in Init and its /metrics keep saying why (an exit
would restart the init container into CrashLoopBackOff, with nothing to scrape in between).

The wait doubles from FIRST_DELAY_SECONDS up to the cap and is the same for every reason: a
digest mismatch is tried again too (the object may be replaced with the right bytes), but never
sooner than the wait, and downloaded again only once its ETag changed (`fetch.MismatchedObjects`).
Each wait is jittered ("equal jitter": half of it fixed, the other half random, AWS Architecture
Blog, "Exponential Backoff And Jitter"), so the pods of a fleet that failed together at a store
outage do not all come back to it in the same second. Each attempt is a whole `fetch`: what an
earlier one verified is kept (`fetch.fetch_model` finds it present), a partial file is not.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Iterator
from typing import Final, TypeVar

from llamafleet.modelsync.failures import REPORTED, failure_reason
from llamafleet.modelsync.fetch_metrics import FetchMetrics

T = TypeVar("T")

FIRST_DELAY_SECONDS: Final = 5.0

# (the failure, seconds until the next attempt)
OnRetry = Callable[[Exception, float], None]


def backoff_delays(cap_seconds: float) -> Iterator[float]:
    """Seconds to wait before each retry: FIRST_DELAY_SECONDS, doubling, at most `cap_seconds`
    (5, 10, 20, ... for a cap of 300; the cap itself from the start when it is below 5)."""
    delay = FIRST_DELAY_SECONDS
    while True:
        yield min(delay, cap_seconds)
        delay = min(delay * 2, cap_seconds)


def jittered(delay: float, uniform: float) -> float:
    """`delay` with equal jitter: its half plus `uniform` (in [0, 1]) times its other half."""
    return delay / 2 + uniform * delay / 2


def fetch_until_done(
    attempt: Callable[[], T],
    metrics: FetchMetrics,
    cap_seconds: float | None,
    on_retry: OnRetry,
    *,
    sleep: Callable[[float], None] = time.sleep,
    uniform: Callable[[], float] = random.random,  # noqa: S311 (a wait's jitter, not a secret)
) -> T:
    """Run `attempt` until it returns; its result. Each failure the CLI reports in one line
    (`failures.REPORTED`) is counted in `metrics` under its reason; then, with `cap_seconds`,
    `on_retry` is told and the next attempt waits `backoff_delays(cap_seconds)`, each
    `jittered` by a draw of `uniform`; without it, the failure is raised as it came (one
    attempt, as without retries).

    Anything else `attempt` raises (a bug, KeyboardInterrupt) ends the loop at once.

    Raises:
        REPORTED: without `cap_seconds`, the first attempt's failure, as it came.
    """
    delays = None if cap_seconds is None else backoff_delays(cap_seconds)
    while True:
        try:
            return attempt()
        except REPORTED as err:
            metrics.record(failure_reason(err))
            if delays is None:
                raise
            delay = jittered(next(delays), uniform())
            on_retry(err, delay)
        sleep(delay)
