"""The worker's Redis client (redis-py asyncio; hiredis parses replies when installed)."""

from __future__ import annotations

from redis.asyncio import Redis

from app.settings import Settings


def create_redis(settings: Settings) -> Redis | None:
    """A client for `REDIS_URL`, or None when it is unset (the embedded, single-process mode).

    Connects lazily; every command times out after `REDIS_TIMEOUT` seconds, so a stopped or
    unreachable Redis costs a bounded wait, never a hung request.
    """
    if not settings.redis_url:
        return None
    return Redis.from_url(
        settings.redis_url,
        decode_responses=True,
        socket_timeout=settings.redis_timeout,
        socket_connect_timeout=settings.redis_timeout,
        health_check_interval=30,
    )
