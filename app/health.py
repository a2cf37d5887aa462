"""Liveness and readiness probes for container runtimes and load balancers (bare JSON)."""

from __future__ import annotations

import asyncio
import logging
import time
import weakref
from typing import Any

from quart import Blueprint
from quart_schema import hide

from app import state
from app.batching import SharedReads
from app.redis_client import SharedRedis

blueprint = Blueprint("health", __name__)
log = logging.getLogger(__name__)


@blueprint.get("/healthz")
@hide
async def liveness() -> tuple[dict[str, str], int]:
    """200 while the process serves requests; touches nothing else."""
    return {"status": "ok"}, 200


READINESS_TIMEOUT_SECONDS = 1.5  # so /readyz answers within 2 s
REDIS_PING_SECONDS = 0.5
REDIS_PROBE_KEPT_SECONDS = 1.0  # a probe's answer serves every /readyz of the next second


class RedisProbe:
    """Whether Redis answers a PING within `REDIS_PING_SECONDS`, asked at most once a second
    per worker (concurrent askers share the PING in flight), whatever the worker's circuit
    breaker says: the breaker reflects this worker's last calls, and a worker that made none
    would report an unreachable Redis as up."""

    def __init__(self, redis: SharedRedis) -> None:
        self._redis = redis
        self._answer: tuple[float, bool] | None = None  # (when, up)
        self._pings = SharedReads(self._ping)

    async def up(self) -> bool:
        now = time.monotonic()
        if self._answer is not None and now - self._answer[0] < REDIS_PROBE_KEPT_SECONDS:
            return self._answer[1]
        return await self._pings.read("ping")

    async def _ping(self, _key: str) -> bool:
        try:
            async with asyncio.timeout(REDIS_PING_SECONDS):
                up = await self._redis.ping_unguarded()
        except Exception:  # unreachable, timed out, refused: down
            up = False
        self._answer = (time.monotonic(), up)
        return up


_probes: weakref.WeakKeyDictionary[Any, RedisProbe] = weakref.WeakKeyDictionary()


async def redis_state(redis: SharedRedis | None) -> str:
    """ "off" without Redis, else "up" if a PING answered, "down" if not (`RedisProbe`)."""
    if redis is None:
        return "off"
    probe = _probes.get(redis)
    if probe is None:
        probe = _probes[redis] = RedisProbe(redis)
    return "up" if await probe.up() else "down"


@blueprint.get("/readyz")
@hide
async def readiness() -> tuple[dict[str, Any], int]:
    """200 when the database answers `SELECT 1` within 1.5 s and, with Redis configured, Redis
    answers a PING within 0.5 s (probed at most once a second); else 503, naming what is down
    (the error is logged, not shown): `{"status", "database", "redis": "up"|"down"|"off"}`.

    `READYZ_REDIS=optional` keeps a worker ready while Redis is down (it then serves CRUD and
    logins, with 503s where it needs Redis: docs/operations.md) and only reports `redis`."""
    redis = state.redis()
    probing = asyncio.ensure_future(redis_state(redis))
    database = "up"
    try:
        await state.database().ping(READINESS_TIMEOUT_SECONDS)
    except Exception as error:
        log.warning("readiness check failed: %s", type(error).__name__)
        database = "down"
    redis_is = await probing
    needs_redis = state.settings().readyz_redis == "required"
    ready = database == "up" and (redis_is != "down" or not needs_redis)
    body = {"status": "ok" if ready else "unavailable", "database": database, "redis": redis_is}
    return body, 200 if ready else 503
