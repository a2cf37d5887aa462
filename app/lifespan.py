"""What a worker opens while it serves, and closes after: one place, in order.

`serving(state)` opens the resources one by one and registers each one's close with an
`AsyncExitStack` as soon as it is open, so the open and the close of a resource sit together,
shutdown closes them in the reverse order, and a startup that fails halfway closes exactly what
it had opened (tests/test_lifespan.py injects a failure at each step):

1. the database (engine and pools), checked with one connection;
2. the Redis client (when `REDIS_URL` is set; it connects lazily);
3. presence, the credential guard and cache, the verified-password cache;
4. the realtime parts (hub, broker subscription, memory monitor: app.ws.setup);
5. the event-loop lag probe;
6. the scheduler (when `SCHEDULER_ENABLED`).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager

from app.credentials.credential_cache import (
    CREDENTIALS_CHANGED,
    CredentialCache,
    watch_credential_changes,
)
from app.credentials.rate_limit import CredentialGuard
from app.credentials.verified_passwords import VerifiedPasswords
from app.db import Database, PoolUseSampler
from app.loop_lag import LoopLagProbe
from app.presence import PresenceRecorder, create_presence_store
from app.redis_client import create_redis
from app.services.idempotency import IdempotencyStore
from app.state import AppState
from app.tracing import flush_traces, untraced
from app.ws.setup import realtime

log = logging.getLogger("app")


@asynccontextmanager
async def serving(state: AppState) -> AsyncIterator[None]:
    """Open every resource of `state` for the time the worker serves (see the module)."""
    settings = state.settings
    async with AsyncExitStack() as stack:
        # Closed last: the spans of the whole shutdown are exported (off: returns at once).
        stack.push_async_callback(asyncio.to_thread, flush_traces)
        # Made before `untraced()`: tracing instruments the engines made while it is not
        # suppressed.
        database = Database(settings)
        # Requests are traced; what the worker does on its own (and the tasks it starts here)
        # is not (app.tracing).
        stack.enter_context(untraced())
        stack.push_async_callback(database.dispose)
        await database.connect()
        state.database = database
        stack.callback(setattr, state, "database", None)
        pool_use = PoolUseSampler(database)
        pool_use.start()
        stack.push_async_callback(pool_use.stop)
        state.idempotency = IdempotencyStore(
            database,
            ttl_seconds=settings.idempotency_ttl_seconds,
            lease_seconds=settings.idempotency_lease_seconds,
        )
        stack.callback(setattr, state, "idempotency", None)

        redis = create_redis(settings)
        if redis is not None:
            stack.push_async_callback(redis.aclose)
            state.redis = redis
            stack.callback(setattr, state, "redis", None)

        stack.callback(_forget_credentials_and_presence, state)
        store = create_presence_store(settings, database=database, redis=redis)
        state.presence = PresenceRecorder(store)
        state.credential_guard = CredentialGuard(settings, redis)
        state.verified_passwords = VerifiedPasswords(settings.secret_key)
        if redis is not None and settings.credential_cache_seconds > 0:
            cache = CredentialCache(
                redis,
                key_prefix=settings.redis_key_prefix,
                max_age=settings.credential_cache_seconds,
            )
            state.credential_cache = cache
            watch_credential_changes(database.session_class)
            database.after_unit_of_work(CREDENTIALS_CHANGED, cache.advance)

        await stack.enter_async_context(realtime(state, redis))

        probe = LoopLagProbe()
        probe.start()
        stack.push_async_callback(probe.stop)
        state.loop_lag = probe
        stack.callback(setattr, state, "loop_lag", None)

        if settings.scheduler_enabled:
            from app.scheduler.service import SchedulerService

            scheduler = SchedulerService(settings, redis, database, store)
            stack.push_async_callback(scheduler.stop)
            await scheduler.start()
            state.scheduler = scheduler
            stack.callback(setattr, state, "scheduler", None)

        log.info(
            "serving with database %s, presence %s, redis %s",
            database.engine.url.render_as_string(),
            settings.effective_presence_backend,
            "on" if redis is not None else "off",
        )
        yield


def _forget_credentials_and_presence(state: AppState) -> None:
    state.presence = state.credential_guard = state.verified_passwords = None
    state.credential_cache = None
