"""Read an object in order, fetched as parallel ranged GETs with a bounded window.

Consumers (a file writer, a hasher) need the bytes in order; S3 is fastest with several
connections. Up to `window` ranges are in flight; memory is `window + 1` chunks.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Final

from llamafleet.modelsync.errors import StoreError
from llamafleet.modelsync.memory import return_large_buffers_to_os
from llamafleet.modelsync.progress import Advance
from llamafleet.modelsync.retry import with_backoff
from llamafleet.modelsync.store import RemoteStore, s3_errors

DOWNLOAD_CHUNK: Final = 8 << 20
DOWNLOAD_WINDOW: Final = 8


def _get_range(store: RemoteStore, key: str, offset: int, length: int) -> bytes:
    def get() -> bytes:
        response = store.client.get_object(
            Bucket=store.location.bucket, Key=key, Range=f"bytes={offset}-{offset + length - 1}"
        )
        return response["Body"].read()

    with s3_errors(f"reading s3://{store.location.bucket}/{key} at {offset}"):
        data = with_backoff(get)
    if len(data) != length:
        raise StoreError(
            f"s3://{store.location.bucket}/{key}: got {len(data)} bytes at {offset},"
            f" expected {length}"
        )
    return data


def stream_object(
    store: RemoteStore,
    key: str,
    size: int,
    consume: Callable[[bytes], None],
    *,
    advance: Advance,
    chunk_size: int | None = None,
    window: int = DOWNLOAD_WINDOW,
) -> None:
    """Feed the object's `size` bytes to `consume`, in order."""
    chunk_size = chunk_size or DOWNLOAD_CHUNK
    return_large_buffers_to_os()
    offsets = iter(range(0, size, chunk_size))
    with ThreadPoolExecutor(window) as pool:
        pending: deque[Future[bytes]] = deque()

        def request_next() -> None:
            offset = next(offsets, None)
            if offset is not None:
                length = min(chunk_size, size - offset)
                pending.append(pool.submit(_get_range, store, key, offset, length))

        for _ in range(window):
            request_next()
        try:
            while pending:
                data = pending.popleft().result()
                request_next()
                consume(data)
                advance(len(data))
        finally:
            for future in pending:
                future.cancel()
