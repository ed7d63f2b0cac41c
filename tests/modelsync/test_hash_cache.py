"""The hash cache is shared by the threads that hash and upload files at once."""

from __future__ import annotations

import threading
from pathlib import Path

from llamafleet.modelsync.hashcache import CachedDigest, FileIdentity, HashCache

THREADS, STORES = 8, 150


def identity(thread: int, index: int) -> FileIdentity:
    return FileIdentity(f"/models/{thread}-{index}.gguf", index, index, index, index)


def test_stores_from_many_threads_at_once_all_land(tmp_path: Path) -> None:
    cache = HashCache(tmp_path)
    start = threading.Barrier(THREADS)
    errors: list[BaseException] = []

    def store_many(thread: int) -> None:
        start.wait()
        try:
            for index in range(STORES):
                cache.store(identity(thread, index), CachedDigest(f"{thread:02x}{index:062x}", {}))
                cache.lookup(identity(thread, index))
        except BaseException as error:
            errors.append(error)

    workers = [threading.Thread(target=store_many, args=(n,)) for n in range(THREADS)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()

    assert errors == []
    reopened = HashCache(tmp_path)
    for thread in range(THREADS):
        for index in range(STORES):
            found = reopened.lookup(identity(thread, index))
            assert found is not None
            assert found.digest == f"{thread:02x}{index:062x}"
