"""Time bounds on a worker's tasks, all on one loop timer: `within(seconds, awaitable)`.

Every request sets two bounds: its database read (`DB_TIMEOUT`, app.db) and the send of its
response (`RESPONSE_TIMEOUT`, app.http_connection). `asyncio.timeout` arms a loop timer for
each and disarms it after, through a context manager's two coroutines: 63,000 instructions of
a `GET /api/v1/user/<id>`'s 1.56 M, 4% (callgrind, 8 requests at a time in-process;
docs/performance.md). Here a bound is an entry in a dict, and the loop has one timer for them
all, armed at the earliest deadline: almost every bound is left before it is due, so that
timer seldom fires, and when it does it cancels the tasks whose deadline passed and re-arms.

What a bounded task sees is `asyncio.timeout`'s: a `TimeoutError` when its bound passed
(`BoundExpired`, raised from the `CancelledError` that stopped it), and a cancellation of its
own (a client gone, a shutdown) still a `CancelledError`. A bound is late by the loop's lag at
most, as a timer is.
"""

from __future__ import annotations

import asyncio
import math
import threading
from collections.abc import Awaitable
from typing import TypeVar

T = TypeVar("T")

# A timer due within this much of a deadline may run before it (asyncio's clock resolution).
CLOCK_SLACK_SECONDS = 0.001


class BoundExpired(TimeoutError):
    """The bound set by `within` passed (not a `TimeoutError` of the awaited work's own)."""


class TaskDeadlines:
    """The bounded tasks of one thread's event loop (the loop of the first bound set; a later
    loop's first bound drops what the previous, ended loop left, as a test's new loop does)."""

    def __init__(self) -> None:
        self._loop: asyncio.AbstractEventLoop | None = None
        self._due: dict[int, tuple[float, asyncio.Task[object]]] = {}
        self._expired: set[int] = set()
        self._next_key = 0
        self._timer: asyncio.TimerHandle | None = None

    async def within(self, seconds: float | None, awaitable: Awaitable[T]) -> T:
        """`await awaitable`, cancelled once `seconds` have passed; `None`: unbounded.

        Raises `BoundExpired` (a `TimeoutError`, as `asyncio.timeout` raises) if the bound
        passed, else what the awaitable raises. Must be awaited by a task."""
        if seconds is None:
            return await awaitable
        loop = asyncio.get_running_loop()
        task = asyncio.current_task(loop)
        if task is None:
            raise RuntimeError("a bound needs a task")
        cancelling = task.cancelling()
        key = self._watch(loop, task, loop.time() + seconds)
        try:
            result = await awaitable
        except asyncio.CancelledError as error:
            if self._forget(key) and task.uncancel() <= cancelling:
                raise BoundExpired(f"not done within {seconds} s") from error
            raise
        except BaseException:
            self._forget(key)
            raise
        if self._forget(key):  # cancelled as it finished, and not stopped by it
            task.uncancel()
        return result

    def bounded(self) -> int:
        """How many bounds are set (tests: none is left behind)."""
        return len(self._due)

    def _watch(
        self, loop: asyncio.AbstractEventLoop, task: asyncio.Task[object], deadline: float
    ) -> int:
        if loop is not self._loop:
            self._start_on(loop)
        key = self._next_key = self._next_key + 1
        self._due[key] = (deadline, task)
        if self._timer is None or deadline < self._timer.when():
            self._arm(loop, deadline)
        return key

    def _forget(self, key: int) -> bool:
        """Drop bound `key`; True if it had expired (its task was cancelled for it)."""
        del self._due[key]
        if key in self._expired:
            self._expired.discard(key)
            return True
        return False

    def _start_on(self, loop: asyncio.AbstractEventLoop) -> None:
        if self._timer is not None:
            self._timer.cancel()
        self._loop = loop
        self._due.clear()
        self._expired.clear()
        self._timer = None

    def _arm(self, loop: asyncio.AbstractEventLoop, deadline: float) -> None:
        if self._timer is not None:
            self._timer.cancel()
        self._timer = loop.call_at(deadline, self._expire)

    def _expire(self) -> None:
        loop = self._loop
        assert loop is not None  # armed by `_watch`, which sets it
        self._timer = None
        now = loop.time() + CLOCK_SLACK_SECONDS
        next_deadline = math.inf
        for key, (deadline, task) in self._due.items():
            if key in self._expired:
                continue
            if deadline <= now:
                self._expired.add(key)
                task.cancel()
            elif deadline < next_deadline:
                next_deadline = deadline
        if next_deadline < math.inf:
            self._arm(loop, next_deadline)


_per_thread = threading.local()  # a thread runs one loop at a time; each has its own bounds


def within(seconds: float | None, awaitable: Awaitable[T]) -> Awaitable[T]:
    """`TaskDeadlines.within` on this thread's bounds (a worker's loop is its main thread's;
    a loop run in another thread gets bounds of its own)."""
    try:
        deadlines: TaskDeadlines = _per_thread.deadlines
    except AttributeError:  # this thread's first bound
        deadlines = _per_thread.deadlines = TaskDeadlines()
    return deadlines.within(seconds, awaitable)
