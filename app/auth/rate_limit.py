"""Rate limits of the login and token endpoints, per client address (the `limits` library).

The counters live in Redis when `REDIS_URL` is set, so every worker and container shares them;
otherwise in this process (the embedded single-process mode). A moving window of
`AUTH_RATE_LIMIT` (e.g. "10/minute") hits per endpoint and client. If Redis fails, the limit is
not enforced (logged): logging in stays possible while Redis is down.
"""

from __future__ import annotations

import logging
import math
import time

from limits import RateLimitItem, parse
from limits.aio.storage import MemoryStorage, RedisStorage, Storage
from limits.aio.strategies import MovingWindowRateLimiter
from redis.asyncio import Redis
from werkzeug.exceptions import TooManyRequests

from app.settings import Settings

log = logging.getLogger(__name__)


class TooManyAttempts(TooManyRequests):
    def __init__(self, retry_after: int) -> None:
        super().__init__(f"too many attempts; retry after {retry_after} s")
        self.retry_after_seconds = retry_after

    def get_headers(self, *args, **kwargs):  # noqa: ANN002, ANN003, ANN201
        return [*super().get_headers(*args, **kwargs), ("Retry-After", str(self.retry_after_seconds))]


class AuthRateLimiter:
    """Counts attempts per `(scope, client)`; `hit` raises 429 with `Retry-After` past the limit."""

    def __init__(self, settings: Settings, redis: Redis | None) -> None:
        self.item: RateLimitItem = parse(settings.auth_rate_limit)
        self.storage: Storage
        if redis is not None:
            # Shares the worker's connection pool: closed with the app's Redis client.
            self.storage = RedisStorage(
                "async+redis://",
                implementation="redispy",
                key_prefix=f"{settings.presence_key_prefix}rate-limit",
                connection_pool=redis.connection_pool,
            )
        else:
            self.storage = MemoryStorage()
        self.limiter = MovingWindowRateLimiter(self.storage)

    async def hit(self, scope: str, client: str) -> None:
        """Count one attempt. Raises `TooManyAttempts` (429) once the limit is reached."""
        try:
            allowed = await self.limiter.hit(self.item, scope, client)
            if allowed:
                return
            stats = await self.limiter.get_window_stats(self.item, scope, client)
        except TooManyAttempts:
            raise
        except Exception as error:  # noqa: BLE001 (fail open: see module docstring)
            log.warning("rate-limit store failed (%s); not enforcing", type(error).__name__)
            return
        raise TooManyAttempts(max(1, math.ceil(stats.reset_time - time.time())))
