"""Online presence: who was active in the last N minutes.

One interface, `PresenceStore`, three backends chosen by `PRESENCE_BACKEND`:
redis (Armin Ronacher's minute-bucket recipe), database (a `last_seen` column) and memory
(the embedded default). Times are epoch seconds from an injectable clock, so tests can move time.
"""

from __future__ import annotations

import logging
import time

from app.db import Database
from app.presence.store import Clock, PresenceStore, check_window
from app.redis_client import SharedRedis
from app.settings import Settings

__all__ = [
    "Clock",
    "PresenceRecorder",
    "PresenceStore",
    "check_window",
    "create_presence_store",
]


def create_presence_store(
    settings: Settings, *, database: Database, redis: SharedRedis | None, clock: Clock = time.time
) -> PresenceStore:
    """The backend named by `settings.effective_presence_backend`."""
    backend = settings.effective_presence_backend
    if backend == "redis":
        from app.presence.redis_store import RedisPresenceStore

        assert redis is not None  # Settings refuses PRESENCE_BACKEND=redis without REDIS_URL
        return RedisPresenceStore(
            redis,
            window_minutes=settings.online_last_minutes,
            key_prefix=settings.redis_key_prefix,
            clock=clock,
        )
    if backend == "database":
        from app.presence.database_store import DatabasePresenceStore

        return DatabasePresenceStore(
            database, max_window_minutes=settings.presence_database_max_minutes, clock=clock
        )
    from app.presence.memory_store import MemoryPresenceStore

    return MemoryPresenceStore(window_minutes=settings.online_last_minutes, clock=clock)


class PresenceRecorder:
    """Marks users online without ever failing the request it rides on.

    A user is marked at most once per minute of the store's clock by each worker (the Redis
    recipe keeps one set per minute, the database backend one write a minute): the other
    requests of that minute cost no store round trip. `last_seen` is therefore the start of the
    user's activity in that minute (up to a minute old). Marks saved so are counted in
    `throttled`.

    A failing store is logged (once per back-off) and counted in `failures`; after a failure,
    marks are skipped for `backoff_seconds`, so a dead Redis costs one timeout per back-off, not
    one per request.
    """

    REMEMBERED_USERS = 100_000  # past this, marks of earlier minutes are forgotten

    def __init__(
        self, store: PresenceStore, *, backoff_seconds: float = 5.0, clock: Clock = time.monotonic
    ) -> None:
        self.store = store
        self.backoff_seconds = backoff_seconds
        self.clock = clock
        self.failures = 0
        self.skipped = 0
        self.throttled = 0
        self._retry_at = 0.0
        self._marked_minute: dict[str, int] = {}

    async def mark(self, user_id: str) -> None:
        minute = int(self.store.clock()) // 60
        if self._marked_minute.get(user_id) == minute:
            self.throttled += 1
            return
        if self.clock() < self._retry_at:
            self.skipped += 1
            return
        try:
            await self.store.mark(user_id)
            if len(self._marked_minute) >= self.REMEMBERED_USERS:
                self._marked_minute = {
                    user: seen for user, seen in self._marked_minute.items() if seen == minute
                }
            self._marked_minute[user_id] = minute
        except Exception as error:
            self.failures += 1
            self._retry_at = self.clock() + self.backoff_seconds
            logging.getLogger(__name__).warning(
                "presence store %s failed (%s: %s); skipping marks for %.0f s",
                type(self.store).__name__,
                type(error).__name__,
                error,
                self.backoff_seconds,
            )
