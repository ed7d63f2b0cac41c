"""Requests in flight per group, shared by a gateway's replicas through Redis.

Each replica publishes its own counts (`llamafleet:in-flight:<replica>`, JSON, expiring after
STALE_SECONDS) and reads the others' every SHARE_SECONDS, so spill-over compares a tier's
capacity with the requests every replica has sent it, within SHARE_SECONDS. A replica that dies
stops refreshing its key, which expires: its requests stop counting. Without Redis, or while
it cannot be reached, each replica counts alone (its own requests only).
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
from collections import Counter
from collections.abc import Callable, Mapping

from redis.asyncio import Redis

from llamafleet_gateway import environment

SHARE_SECONDS = 0.5
STALE_SECONDS = 5
PREFIX = "llamafleet:in-flight:"
REPLICAS = "llamafleet:in-flight-replicas"

log = logging.getLogger(__name__)
if not log.handlers:  # LiteLLM configures its own loggers only: say it on stderr (the pod's log)
    log.addHandler(logging.StreamHandler())


class SharedCounts:
    """The other replicas' counts, as last read (`others`), and a loop that publishes this
    replica's (`own()`) and reads theirs."""

    def __init__(self, client: Redis, own: Callable[[], Mapping[str, int]]) -> None:
        self._client = client
        self._own = own
        self._replica = os.urandom(8).hex()
        self._task: asyncio.Task[None] | None = None
        self._failed = False
        self.others: Counter[str] = Counter()

    def start(self) -> None:
        """Start sharing on the running event loop, unless it runs already."""
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._loop())

    async def _loop(self) -> None:
        while True:
            try:
                await self.share()
                self._failed = False
            except Exception as exc:  # never stop sharing; count alone meanwhile
                if not self._failed:
                    log.warning("in-flight counts not shared (each replica counts alone): %s", exc)
                self._failed = True
                self.others = Counter()
            await asyncio.sleep(SHARE_SECONDS)

    async def share(self) -> None:
        """Publish this replica's counts; read every other live replica's into `others`."""
        own = {group: count for group, count in self._own().items() if count > 0}
        key = PREFIX + self._replica
        await self._client.set(key, json.dumps(own), ex=STALE_SECONDS)
        await self._client.sadd(REPLICAS, self._replica)
        replicas = sorted(
            str(r, "utf-8") if isinstance(r, bytes) else str(r)
            for r in await self._client.smembers(REPLICAS)
        )
        others = [r for r in replicas if r != self._replica]
        values = await self._client.mget([PREFIX + r for r in others]) if others else []
        total: Counter[str] = Counter()
        for replica, value in zip(others, values, strict=True):
            if value is None:  # expired: that replica is gone
                await self._client.srem(REPLICAS, replica)
                continue
            total.update(_counts(value))
        self.others = total


def _counts(value: bytes | str) -> dict[str, int]:
    """A replica's published counts; nothing from a value that is not a JSON object of counts."""
    try:
        loaded = json.loads(value)
    except ValueError:
        return {}
    if not isinstance(loaded, dict):
        return {}
    return {
        str(group): count
        for group, count in loaded.items()
        if isinstance(count, int) and not isinstance(count, bool) and count > 0
    }


def from_environment(own: Callable[[], Mapping[str, int]]) -> SharedCounts | None:
    """SharedCounts on the Redis at LLAMAFLEET_GATEWAY_REDIS (`host:port`, password from
    REDIS_PASSWORD); None where it is unset (one replica, or no Redis)."""
    address = os.environ.get(environment.REDIS)
    if not address:
        return None
    host, _, port = address.rpartition(":")
    client = Redis(
        host=host,
        port=int(port),
        password=os.environ.get("REDIS_PASSWORD") or None,
        socket_timeout=1,
        socket_connect_timeout=1,
    )
    return SharedCounts(client, own)
