"""Run history of each job: scheduled time, start, duration, outcome and error text.

Kept in Redis (a capped list per job, shared by every worker) or in memory, newest first.
"""

from __future__ import annotations

import json
from collections import defaultdict, deque
from typing import Any

from redis.asyncio import Redis


class MemoryRunHistory:
    def __init__(self, keep: int) -> None:
        self._runs: dict[str, deque] = defaultdict(lambda: deque(maxlen=keep))

    async def record(self, job_id: str, run: dict[str, Any]) -> None:
        self._runs[job_id].appendleft(run)

    async def runs(self, job_id: str) -> list[dict[str, Any]]:
        return list(self._runs.get(job_id, ()))

    async def forget(self, job_id: str) -> None:
        self._runs.pop(job_id, None)


class RedisRunHistory:
    def __init__(self, redis: Redis, *, keep: int, prefix: str = "") -> None:
        self.redis = redis
        self.keep = keep
        self.prefix = prefix

    def _key(self, job_id: str) -> str:
        return f"{self.prefix}scheduler:runs:{job_id}"

    async def record(self, job_id: str, run: dict[str, Any]) -> None:
        async with self.redis.pipeline(transaction=True) as pipeline:
            pipeline.lpush(self._key(job_id), json.dumps(run))
            pipeline.ltrim(self._key(job_id), 0, self.keep - 1)
            await pipeline.execute()

    async def runs(self, job_id: str) -> list[dict[str, Any]]:
        return [json.loads(item) for item in await self.redis.lrange(self._key(job_id), 0, -1)]

    async def forget(self, job_id: str) -> None:
        await self.redis.delete(self._key(job_id))
