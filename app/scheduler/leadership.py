"""Which worker runs the jobs: the holder of a lease in Redis, renewed while it lives.

The lease is redis-py's `redis.asyncio.lock.Lock`: `acquire(token=identity)` takes it
(`SET key identity NX PX lease`), `reacquire()` renews it to the full lease while this worker
still owns it (a compare-and-extend script), `release()` drops it only if owned. The holder
renews it every tick (1 s); if the leader dies, its lease expires within
`SCHEDULER_LEASE_SECONDS` and another worker takes it at its next attempt: a takeover within
lease + 1 s. Without Redis there is one process, and it always leads.
"""

from __future__ import annotations

import contextlib
import os
import socket
import time
import uuid

from redis.asyncio.lock import Lock
from redis.exceptions import LockError, LockNotOwnedError

from app.redis_client import SharedRedis


def worker_identity() -> str:
    """`host:pid:random`, unique per worker start; the lease's value."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


class LocalLeadership:
    """One process, no Redis: always the leader."""

    def __init__(self) -> None:
        self.identity = worker_identity()

    def held_now(self) -> bool:
        return True

    def held_until(self) -> float:
        return time.time() + 3600.0  # always the leader: an hour ahead, renewed each tick

    async def acquire_or_renew(self) -> bool:
        return True

    async def leader(self) -> str | None:
        return self.identity

    async def release(self) -> None:
        return None


class RedisLeadership:
    """The lease in Redis at `key`, held for `lease_seconds` after each renewal.

    Raises `redis.exceptions.RedisError` from any call when Redis fails.
    """

    def __init__(self, redis: SharedRedis, *, key: str, lease_seconds: float) -> None:
        self.redis = redis
        self.key = key
        self.lease_seconds = lease_seconds
        self.identity = worker_identity()
        self.lock = Lock(redis, key, timeout=lease_seconds, blocking=False, thread_local=False)
        self._held = False  # held at the last attempt (or unknown after an error)
        self._valid_until = 0.0  # loop time until which the lease is surely still ours

    def held_now(self) -> bool:
        """Whether the lease is surely still this worker's: taken or renewed less than a lease
        ago, counted from before the call that did it (a loop blocked past the lease, or a
        paused process, finds it lapsed, whoever holds it now)."""
        return self._held and time.monotonic() < self._valid_until

    def held_until(self) -> float:
        """The Unix time until which the lease is surely this worker's (0: not held). Redis
        expires the lease no earlier, and nobody else can take it before it expires there."""
        if not self._held:
            return 0.0
        return time.time() + max(0.0, self._valid_until - time.monotonic())

    async def acquire_or_renew(self) -> bool:
        """Whether this worker holds the lease after the call."""
        asked = time.monotonic()
        if self._held:
            try:
                await self.lock.reacquire()
                self._valid_until = asked + self.lease_seconds
                return True
            except LockNotOwnedError:
                self._held = False  # expired and maybe taken: compete again
        self._held = bool(await self.lock.acquire(blocking=False, token=self.identity))
        if self._held:
            self._valid_until = asked + self.lease_seconds
        return self._held

    async def leader(self) -> str | None:
        holder = await self.redis.get(self.key)
        if isinstance(holder, bytes):
            holder = holder.decode()
        return None if holder is None else str(holder)

    async def release(self) -> None:
        self._held = False
        with contextlib.suppress(LockError):  # not held (or no longer): nothing to release
            await self.lock.release()
