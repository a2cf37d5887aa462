"""Which worker runs the jobs: the holder of a lease in Redis, renewed while it lives.

`SET key me NX PX lease` takes the lease; the holder renews it every third of the lease with a
compare-and-extend script. If the leader dies, its lease expires within `SCHEDULER_LEASE_SECONDS`
and another worker takes it at its next attempt: a takeover within lease + lease/3 seconds.
Without Redis there is one process, and it always leads.
"""

from __future__ import annotations

import os
import socket
import uuid

from redis.asyncio import Redis

RENEW = """
if redis.call('get', KEYS[1]) == ARGV[1] then
  return redis.call('pexpire', KEYS[1], ARGV[2])
end
return 0
"""
RELEASE = """
if redis.call('get', KEYS[1]) == ARGV[1] then
  return redis.call('del', KEYS[1])
end
return 0
"""


def worker_identity() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


class LocalLeadership:
    """One process, no Redis: always the leader."""

    def __init__(self) -> None:
        self.identity = worker_identity()

    async def acquire_or_renew(self) -> bool:
        return True

    async def leader(self) -> str | None:
        return self.identity

    async def release(self) -> None:
        return None


class RedisLeadership:
    def __init__(self, redis: Redis, *, key: str, lease_seconds: float) -> None:
        self.redis = redis
        self.key = key
        self.lease_ms = int(lease_seconds * 1000)
        self.identity = worker_identity()

    async def acquire_or_renew(self) -> bool:
        """Whether this worker holds the lease after the call."""
        if await self.redis.eval(RENEW, 1, self.key, self.identity, self.lease_ms):
            return True
        return bool(await self.redis.set(self.key, self.identity, nx=True, px=self.lease_ms))

    async def leader(self) -> str | None:
        holder = await self.redis.get(self.key)
        return None if holder is None else str(holder)

    async def release(self) -> None:
        await self.redis.eval(RELEASE, 1, self.key, self.identity)
