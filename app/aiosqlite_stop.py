"""aiosqlite's `Connection.stop()` made idempotent: a second call returns the first call's
future instead of queueing a second stop that nothing will ever answer.

Why: SQLAlchemy (2.1, `AsyncAdapt_terminate.terminate`) ends an invalidated connection by
starting a graceful `close()` under `asyncio.shield`; when the task is cancelled again while it
waits (a shutdown cancelling every task, a second timeout), it also calls `stop()` at once. The
worker thread of aiosqlite 0.22 ends at the first stop it reads, and the graceful `close()`
then calls `stop()` again in its `finally` and awaits a future nobody will resolve. The task
never ends, so neither does `asyncio.run()`'s cancelling of the remaining tasks: a worker on
the embedded SQLite hung on shutdown, and so did a test's event loop (CI, a fresh clone of
2026-12-06, `tests/scheduler/test_conditional.py` on SQLite). wapiti-scanner/wapiti#802 is the
same hang; it added a watchdog around the loop's close instead.

Listed in app/overrides.py; tests/test_aiosqlite_stop.py shows the hang upstream and its end
here. aiosqlite has no setting for it (0.22.1 is its newest release).
"""

from __future__ import annotations

import asyncio
from typing import Any

import aiosqlite

_STOP_FUTURE = "_quart_framework_stop_future"
_upstream_stop = aiosqlite.Connection.stop


def _stop_once(self: aiosqlite.Connection) -> asyncio.Future[Any] | None:
    """`Connection.stop()`, once: later calls return the first call's future (None when it
    was called without an event loop), answered when the worker thread ends."""
    state = vars(self)
    if _STOP_FUTURE in state:
        first: asyncio.Future[Any] | None = state[_STOP_FUTURE]
        return first
    future = _upstream_stop(self)
    state[_STOP_FUTURE] = future
    return future


def apply() -> None:
    """Install the idempotent stop (idempotent itself)."""
    aiosqlite.Connection.stop = _stop_once  # type: ignore[method-assign]


def remove() -> None:
    """Put aiosqlite's own stop back (tests/test_aiosqlite_stop.py shows its hang)."""
    aiosqlite.Connection.stop = _upstream_stop  # type: ignore[method-assign]
