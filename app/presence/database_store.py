"""Presence in the `users.last_seen` column (the follow-up post's `lastseen` variant).

Writes are throttled to at most one per user per minute: a worker skips users it wrote less than
`WRITE_INTERVAL_SECONDS` ago, and the UPDATE itself only moves `last_seen` forward by at least
that much, so N workers still write at most once a minute per user. `last_seen` is therefore up
to a minute old. Windows can be wide ("online in the last 3 days"), up to
`PRESENCE_DATABASE_MAX_MINUTES`.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

from sqlalchemy import or_, select, update

from app.db import Database
from app.models import User
from app.presence.store import Clock, check_window

WRITE_INTERVAL_SECONDS = 60


class DatabasePresenceStore:
    def __init__(
        self, database: Database, *, max_window_minutes: int, clock: Clock = time.time
    ) -> None:
        self.database = database
        self.max_window_minutes = max_window_minutes
        self.clock = clock
        self._written_at: dict[str, float] = {}

    def _now(self) -> datetime:
        return datetime.fromtimestamp(self.clock(), UTC)

    async def mark(self, user_id: str) -> None:
        now = self.clock()
        if now - self._written_at.get(user_id, float("-inf")) < WRITE_INTERVAL_SECONDS:
            return
        moment = datetime.fromtimestamp(now, UTC)
        threshold = moment - timedelta(seconds=WRITE_INTERVAL_SECONDS)
        async with self.database.session() as session:
            await session.execute(
                update(User)
                .where(User.id == user_id)
                .where(or_(User.last_seen.is_(None), User.last_seen <= threshold))
                .values(last_seen=moment)
            )
            await session.commit()
        self._written_at[user_id] = now
        if len(self._written_at) > 100_000:  # bound the throttle's memory
            self._written_at.clear()

    async def online(self, minutes: int) -> dict[str, float]:
        check_window(minutes, self)
        # One write interval of slack: a throttled user's column is up to a minute old.
        since = self._now() - timedelta(minutes=minutes, seconds=WRITE_INTERVAL_SECONDS)
        async with self.database.session() as session:
            rows = await session.execute(
                select(User.id, User.last_seen).where(User.last_seen >= since)
            )
            return {user_id: seen.timestamp() for user_id, seen in rows if seen is not None}

    async def last_seen(self, user_id: str) -> float | None:
        async with self.database.session() as session:
            seen = await session.scalar(select(User.last_seen).where(User.id == user_id))
        return None if seen is None else seen.timestamp()

    async def purge(self) -> int:
        cutoff = self.clock() - WRITE_INTERVAL_SECONDS
        stale = [uid for uid, written in self._written_at.items() if written < cutoff]
        for user_id in stale:
            del self._written_at[user_id]
        return 0  # the column is the record; nothing in the database is dropped
