"""Retrying background loops end when cancelled, even when a library turns the cancellation
into its own time-out or swallows it (app/cancellation.py; CPython 3.11's `asyncio.wait_for`,
gh-86296); and the worker's drain hooks are bounded (app/supervisor.py, issue 32)."""

from __future__ import annotations

import asyncio
import logging

import pytest

from app.cancellation import raise_if_stopping, stopping
from app.supervisor import run_drain_hooks

# Per test (an Event belongs to one loop): the library call returns once RELEASED is set (it
# ends the unguarded loop); ATTEMPTED is set when the loop made an attempt.
RELEASED: list[asyncio.Event] = []
ATTEMPTED: list[asyncio.Event] = []


async def turned_into_a_timeout() -> None:
    """A library call whose time-out fired as the cancel came: it raises its TimeoutError."""
    try:
        await RELEASED[-1].wait()
    except asyncio.CancelledError:
        raise TimeoutError from None


async def swallowed_by_wait_for() -> int:
    """Python 3.11's `wait_for` returns the inner result when the cancel and the result come
    in the same turn of the loop (gh-86296); 3.12 raises CancelledError."""
    inner = asyncio.get_running_loop().create_future()
    task = asyncio.current_task()
    assert task is not None

    def result_and_cancel() -> None:
        inner.set_result(1)
        task.cancel()

    asyncio.get_running_loop().call_soon(result_and_cancel)
    return await asyncio.wait_for(inner, 10)


async def retrying(call, guarded: bool, attempts: list[int]) -> None:
    """The shape of the broker's subscription loop and the hub's heartbeat."""
    while True:
        if guarded:
            raise_if_stopping()
        attempts.append(1)
        ATTEMPTED[-1].set()
        if len(attempts) > 3:
            return  # the unguarded loop went on retrying after its cancel
        try:
            await call()
        except Exception as error:
            if guarded:
                raise_if_stopping(error)


@pytest.mark.parametrize("call", [turned_into_a_timeout, swallowed_by_wait_for])
async def test_a_guarded_retry_loop_ends_when_cancelled(call) -> None:
    attempts: list[int] = []
    RELEASED.append(asyncio.Event())
    ATTEMPTED.append(asyncio.Event())
    task = asyncio.create_task(retrying(call, guarded=True, attempts=attempts))
    await ATTEMPTED[-1].wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await asyncio.wait_for(task, 5)
    assert len(attempts) <= 2


async def test_an_unguarded_loop_retries_after_its_cancel_became_a_timeout() -> None:
    """Why the guard exists: without it the cancelled loop retries, and `await task` after
    `cancel()` (a drain) never returns."""
    attempts: list[int] = []
    RELEASED.append(asyncio.Event())
    ATTEMPTED.append(asyncio.Event())
    task = asyncio.create_task(retrying(turned_into_a_timeout, False, attempts))
    await ATTEMPTED[-1].wait()
    task.cancel()
    done, _ = await asyncio.wait({task}, timeout=0.5)
    assert not done and len(attempts) == 2  # it went round again, waiting once more
    RELEASED[-1].set()  # let it run into its attempt cap
    await asyncio.wait_for(task, 5)
    assert len(attempts) == 4


async def test_stopping_is_false_in_a_task_not_cancelled() -> None:
    assert stopping() is False
    raise_if_stopping()  # nothing raised


async def test_a_drain_hook_that_never_ends_is_cancelled_at_the_bound(caplog) -> None:
    ran: list[str] = []
    cancelled = asyncio.Event()

    async def hangs() -> None:
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            cancelled.set()
            raise

    async def fails() -> None:
        ran.append("fails")
        raise RuntimeError("broken hook")

    async def closes() -> None:
        ran.append("closes")

    caplog.set_level(logging.ERROR, logger="app.supervisor")
    loop = asyncio.get_running_loop()
    started = loop.time()
    await run_drain_hooks([fails, hangs, closes], bound=0.5)
    took = loop.time() - started
    await asyncio.wait_for(cancelled.wait(), 5)
    assert ran == ["fails", "closes"]  # a hook after the hung one still runs
    assert 0.5 <= took < 5, took
    messages = [record.getMessage() for record in caplog.records]
    assert any("drain hook failed" in m for m in messages), messages
    assert any("still running after 0.5 s" in m and "hangs" in m for m in messages), messages
