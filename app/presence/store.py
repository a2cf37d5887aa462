"""The presence store's interface, shared by its backends (app.presence chooses one)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

Clock = Callable[[], float]


class PresenceStore(Protocol):
    """Records activity per user id and answers who was active recently.

    `max_window_minutes` is the widest window `online()` can answer; wider asks raise
    `ValueError`. `clock()` is the store's "now" in epoch seconds.
    """

    max_window_minutes: int
    clock: Clock

    async def mark(self, user_id: str) -> None:
        """Record that `user_id` is active now."""

    async def online(self, minutes: int) -> dict[str, float]:
        """Users active in the last `minutes` minutes: user id -> last activity (epoch s)."""

    async def last_seen(self, user_id: str) -> float | None:
        """Last activity of `user_id` (epoch s), or None when unknown or too long ago."""

    async def purge(self) -> int:
        """Drop entries too old to be asked for; returns how many went (0 where the backend
        expires them itself)."""


def check_window(minutes: int, store: PresenceStore) -> None:
    if not 1 <= minutes <= store.max_window_minutes:
        raise ValueError(f"minutes: must be from 1 to {store.max_window_minutes}")
