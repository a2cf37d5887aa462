"""The scheduler's state that every worker shares: `running`, `paused` or `stopped`.

In Redis (`<prefix>scheduler:state`) when it is configured, so `POST /scheduler/pause` on any
worker pauses job processing everywhere; in the process otherwise. Transitions follow
Flask-APScheduler 1.11: start when running, or pause/resume/shutdown when stopped, raise
`SchedulerStateError` (its API answers 400).
"""

from __future__ import annotations

from typing import Literal

from app.redis_client import SharedRedis

State = Literal["running", "paused", "stopped"]
RUNNING: State = "running"
PAUSED: State = "paused"
STOPPED: State = "stopped"


class SchedulerStateError(Exception):
    """Start when running, shutdown when stopped (Flask-APScheduler answers 400)."""


class SharedState:
    """Arguments: redis, the worker's client (None: this process only); key, the Redis key."""

    def __init__(self, redis: SharedRedis | None, key: str) -> None:
        self.redis = redis
        self.key = key
        self._local: State = RUNNING

    async def get(self) -> State:
        """The current state; `running` until someone changes it. Raises `RedisError`."""
        if self.redis is None:
            return self._local
        value = await self.redis.get(self.key)
        if isinstance(value, bytes):
            value = value.decode()
        return value if value in (PAUSED, STOPPED) else RUNNING

    async def _set(self, state: State) -> None:
        if self.redis is None:
            self._local = state
        else:
            await self.redis.set(self.key, state)

    async def pause(self) -> None:
        if await self.get() == STOPPED:
            raise SchedulerStateError("Scheduler is not running")
        await self._set(PAUSED)

    async def resume(self) -> None:
        if await self.get() == STOPPED:
            raise SchedulerStateError("Scheduler is not running")
        await self._set(RUNNING)

    async def start(self) -> None:
        if await self.get() != STOPPED:
            raise SchedulerStateError("Scheduler is already running")
        await self._set(RUNNING)

    async def shutdown(self) -> None:
        if await self.get() == STOPPED:
            raise SchedulerStateError("Scheduler is not running")
        await self._set(STOPPED)
