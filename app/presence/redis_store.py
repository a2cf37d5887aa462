"""Presence in Redis: the minute-bucket recipe of Armin Ronacher's Flask snippet (contract §7).

Keys (under an optional prefix):
- `{presence}online-users/<epoch minute>`: a set of the user ids active in that minute;
- `{presence}user-activity/<user id>`: the user's last activity, epoch seconds.

Both expire at `now + window*60 + 10`, so Redis forgets on its own. A mark is one pipeline, one
round trip; `online(N)` is the SUNION of the last N minute sets plus one MGET. Correct with any
number of workers and containers sharing the Redis. The `{presence}` hash tag keeps the keys in
one slot of a Redis Cluster, so SUNION and MGET stay single commands there too.
"""

from __future__ import annotations

import time

from app.presence.store import Clock, check_window
from app.redis_client import SharedRedis


class RedisPresenceStore:
    def __init__(
        self,
        redis: SharedRedis,
        *,
        window_minutes: int,
        key_prefix: str = "",
        clock: Clock = time.time,
    ) -> None:
        self.redis = redis
        self.max_window_minutes = window_minutes
        self.prefix = key_prefix
        self.clock = clock

    def bucket_key(self, minute: int) -> str:
        return f"{self.prefix}{{presence}}online-users/{minute}"

    def activity_key(self, user_id: str) -> str:
        return f"{self.prefix}{{presence}}user-activity/{user_id}"

    async def mark(self, user_id: str) -> None:
        now = int(self.clock())
        expires_at = now + self.max_window_minutes * 60 + 10
        bucket = self.bucket_key(now // 60)
        activity = self.activity_key(user_id)
        async with self.redis.pipeline(transaction=False) as pipeline:
            pipeline.sadd(bucket, user_id)
            pipeline.set(activity, now)
            pipeline.expireat(bucket, expires_at)
            pipeline.expireat(activity, expires_at)
            # One published copy of the recipe forgot this line: nothing was ever written.
            await pipeline.execute()

    async def online(self, minutes: int) -> dict[str, float]:
        check_window(minutes, self)
        current = int(self.clock()) // 60
        keys = [self.bucket_key(current - offset) for offset in range(minutes)]
        user_ids = sorted(str(user_id) for user_id in await self.redis.sunion(keys))
        if not user_ids:
            return {}
        stamps = await self.redis.mget([self.activity_key(user_id) for user_id in user_ids])
        return {
            user_id: float(stamp) if stamp is not None else float(current * 60)
            for user_id, stamp in zip(user_ids, stamps, strict=True)
        }

    async def last_seen(self, user_id: str) -> float | None:
        stamp = await self.redis.get(self.activity_key(user_id))
        return None if stamp is None else float(stamp)

    async def purge(self) -> int:
        return 0  # keys expire by themselves (EXPIREAT)
