"""app.deadlines: bounds on tasks on one loop timer, with `asyncio.timeout`'s outcomes."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest

from app.deadlines import CLOCK_SLACK_SECONDS, BoundExpired, TaskDeadlines, within
from tests.waiting import suspend_once


async def never() -> None:
    await asyncio.Event().wait()


async def bounded_task(seconds: float, bound: Any = within) -> asyncio.Task[None]:
    """A task awaiting `never()` within `seconds` (through `bound`), once its bound is set."""
    entered = asyncio.Event()

    async def run() -> None:
        entered.set()
        await bound(seconds, never())  # sets the bound before the task first suspends

    task = asyncio.ensure_future(run())
    await entered.wait()
    return task


async def test_work_done_within_its_bound_returns_and_leaves_no_bound() -> None:
    deadlines = TaskDeadlines()

    assert await deadlines.within(5.0, suspend_once(42)) == 42
    assert await deadlines.within(None, suspend_once(42)) == 42  # None: unbounded
    assert deadlines.bounded() == 0


async def test_work_past_its_bound_is_cancelled_and_raises_timeout_error() -> None:
    deadlines = TaskDeadlines()
    started = time.monotonic()
    with pytest.raises(TimeoutError) as raised:
        await deadlines.within(0.05, never())
    assert isinstance(raised.value, BoundExpired)
    assert isinstance(raised.value.__cause__, asyncio.CancelledError)
    assert time.monotonic() - started < 5  # not waiting forever
    task = asyncio.current_task()
    assert task is not None and task.cancelling() == 0  # the bound's cancel taken back
    assert deadlines.bounded() == 0
    await suspend_once()  # and the task is not cancelled at its next suspension


async def test_a_cancellation_from_outside_stays_a_cancellation() -> None:
    deadlines = TaskDeadlines()
    task = await bounded_task(60.0, deadlines.within)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert deadlines.bounded() == 0


async def test_an_error_of_the_work_passes_through_its_bound() -> None:
    deadlines = TaskDeadlines()

    async def fails() -> None:
        await suspend_once()
        raise TimeoutError("the work's own")  # not the bound's

    with pytest.raises(TimeoutError, match="the work's own") as raised:
        await deadlines.within(60.0, fails())
    assert not isinstance(raised.value, BoundExpired)
    assert deadlines.bounded() == 0


async def test_a_shorter_bound_set_after_a_longer_one_expires_on_its_own_time() -> None:
    """One timer serves every bound: armed at the earliest, re-armed for an earlier one, and
    re-armed after firing for the ones still due; each bound ends at its own deadline."""
    deadlines = TaskDeadlines()
    long_bound = await bounded_task(60.0, deadlines.within)
    started = time.monotonic()
    ended_after: dict[float, float] = {}

    async def bounded(seconds: float) -> None:
        with pytest.raises(BoundExpired):
            await deadlines.within(seconds, never())
        ended_after[seconds] = time.monotonic() - started

    await asyncio.gather(bounded(0.2), bounded(0.05), bounded(0.1))
    # None early (but for the clock's resolution, as asyncio's own timers).
    assert all(after > seconds - 2 * CLOCK_SLACK_SECONDS for seconds, after in ended_after.items())
    assert max(ended_after.values()) < 30  # none waited for the 60 s bound's time
    assert not long_bound.done() and deadlines.bounded() == 1
    long_bound.cancel()
    with pytest.raises(asyncio.CancelledError):
        await long_bound
    assert deadlines.bounded() == 0


def test_bounds_work_on_each_new_loop() -> None:
    """A test's new loop (or a worker's) after another: the old loop's timer is not used."""
    deadlines = TaskDeadlines()

    async def expires() -> bool:
        try:
            await deadlines.within(0.05, never())
        except BoundExpired:
            return True
        return False

    async def left_behind() -> None:
        await bounded_task(60.0, deadlines.within)  # the loop closes with it set

    asyncio.run(left_behind())
    assert asyncio.run(expires())
    assert asyncio.run(expires())


async def test_a_bound_needs_a_task() -> None:
    deadlines = TaskDeadlines()
    refused = asyncio.get_running_loop().create_future()

    def step_outside_a_task() -> None:  # a loop callback: no current task
        work = never()
        bounded = deadlines.within(1.0, work)
        try:
            bounded.send(None)
        except RuntimeError as error:
            refused.set_result(str(error))
        finally:
            bounded.close()
            work.close()

    asyncio.get_running_loop().call_soon(step_outside_a_task)
    assert await refused == "a bound needs a task"


async def test_a_loop_in_another_thread_has_bounds_of_its_own() -> None:
    """`within` keeps one set of bounds per thread: a loop run in a thread while this one runs
    neither drops this loop's bounds nor is cancelled by this loop's timer."""
    outer = await bounded_task(60.0)

    async def bounded_in_the_thread() -> bool:
        try:
            await within(0.05, never())
        except BoundExpired:
            return True
        return False

    assert await asyncio.to_thread(asyncio.run, bounded_in_the_thread())
    assert not outer.done()
    outer.cancel()
    with pytest.raises(asyncio.CancelledError):
        await outer
