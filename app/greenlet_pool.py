"""SQLAlchemy's `greenlet_spawn`, on greenlets kept for the next call: `run_in_greenlet`.

SQLAlchemy's asyncio layer runs its synchronous code (a connection's checkout, a statement, a
result's rows) in a greenlet, and the driver's awaitables that code meets (`await_`) are
awaited by the caller's coroutine. `greenlet_spawn` makes a new greenlet per call. A new
greenlet runs its first Python frame on a new 16 KiB data stack, mapped, touched and unmapped
by the kernel (`mmap`, page faults, `munmap`): 10.9 us per call on this machine, against 0.8 us
to switch into a greenlet kept from an earlier call (docs/performance.md), where a `GET user`
costs about 700 us in all. The service's reads (app.db `Database.read`) run here: one greenlet
each, taken from this thread's idle ones and given back when its work returns or raises.

What the work sees is `greenlet_spawn`'s: the caller's context variables, SQLAlchemy's
`await_` (the greenlet is marked as SQLAlchemy's own are, `__sqlalchemy_greenlet_provider__`,
app/overrides.py), an exception of an awaitable raised inside the work at its `await_`, and the
work's result or exception given back to the caller.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any, TypeVar

from greenlet import GreenletExit, getcurrent, greenlet

T = TypeVar("T")

# Idle greenlets kept per thread: a worker runs at most its pools' connections' reads at once
# (DB_POOL_SIZE + DB_MAX_OVERFLOW); more than that are dropped when given back.
IDLE_MAX = 64


class _Outcome:
    """What a call's work returned (`failed` False) or raised."""

    __slots__ = ("failed", "value")

    def __init__(self, failed: bool, value: Any) -> None:
        self.failed = failed
        self.value = value


class _ReusedGreenlet(greenlet):  # type: ignore[misc]  # greenlet's class is untyped here
    # SQLAlchemy's `await_` runs only in greenlets with this mark (sqlalchemy.util.concurrency).
    __sqlalchemy_greenlet_provider__ = True


def _serve(call: tuple[Callable[..., Any], tuple[Any, ...], dict[str, Any]]) -> None:
    """A kept greenlet's life: run a call's work, hand its outcome to the caller, wait for
    the next call."""
    while True:
        work, args, kwargs = call
        try:
            outcome = _Outcome(False, work(*args, **kwargs))
        except GreenletExit:  # dropped while working: end, as greenlets do
            raise
        except BaseException as error:
            outcome = _Outcome(True, error)
        del work, args, kwargs  # not kept alive while idle
        call = getcurrent().parent.switch(outcome)


_idle = threading.local()


async def run_in_greenlet(work: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """`work(*args, **kwargs)` in a greenlet, as SQLAlchemy's `greenlet_spawn` runs it.

    Returns what `work` returns; raises what it raises (a `CancelledError` of this coroutine
    is raised inside the work, at its `await_`, and comes back out of it)."""
    try:
        idle: list[_ReusedGreenlet] = _idle.greenlets
    except AttributeError:  # this thread's first call
        idle = _idle.greenlets = []
    current = getcurrent()
    runner = idle.pop() if idle else _ReusedGreenlet(_serve)
    runner.parent = current
    runner.gr_context = current.gr_context  # the caller's context variables
    result = runner.switch((work, args, kwargs))
    while type(result) is not _Outcome:
        try:
            value = await result  # an awaitable the work handed to `await_`
        except BaseException as error:
            result = runner.throw(error)
        else:
            result = runner.switch(value)
    runner.gr_context = None
    if len(idle) < IDLE_MAX:
        idle.append(runner)
    if result.failed:
        raise result.value
    return result.value  # type: ignore[no-any-return]
