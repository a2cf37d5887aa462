"""Presence in this process's memory: the embedded default, for a single worker.

A dict user id -> last activity (epoch s), purged of entries older than the window on every
`purge()` and, at most once a minute, during `mark()`, so it never holds more than the users
active within the window.
"""

from __future__ import annotations

import time

from app.presence.store import Clock, check_window

PURGE_EVERY_SECONDS = 60


class MemoryPresenceStore:
    def __init__(self, *, window_minutes: int, clock: Clock = time.time) -> None:
        self.max_window_minutes = window_minutes
        self.clock = clock
        self._last_activity: dict[str, float] = {}
        self._last_purge = clock()

    async def mark(self, user_id: str) -> None:
        now = self.clock()
        self._last_activity[user_id] = now
        if now - self._last_purge >= PURGE_EVERY_SECONDS:
            await self.purge()

    async def online(self, minutes: int) -> dict[str, float]:
        check_window(minutes, self)
        since = self.clock() - minutes * 60
        return {uid: seen for uid, seen in self._last_activity.items() if seen > since}

    async def last_seen(self, user_id: str) -> float | None:
        seen = self._last_activity.get(user_id)
        if seen is None or seen <= self.clock() - self.max_window_minutes * 60:
            return None
        return seen

    async def purge(self) -> int:
        now = self.clock()
        self._last_purge = now
        since = now - self.max_window_minutes * 60
        stale = [uid for uid, seen in self._last_activity.items() if seen <= since]
        for user_id in stale:
            del self._last_activity[user_id]
        return len(stale)

    def __len__(self) -> int:
        return len(self._last_activity)
