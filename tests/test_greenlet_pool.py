"""app.greenlet_pool: SQLAlchemy's `greenlet_spawn` on kept greenlets, with its outcomes (the
database reads over it: tests/test_db_pool.py)."""

from __future__ import annotations

import asyncio
import contextvars

import pytest
from greenlet import getcurrent
from sqlalchemy.util import await_

from app import greenlet_pool
from app.greenlet_pool import run_in_greenlet
from tests.waiting import suspend_once

request_name: contextvars.ContextVar[str] = contextvars.ContextVar("request_name")


def awaits(value: int) -> int:
    return await_(suspend_once(value)) + 1


async def test_the_work_s_awaits_run_and_its_result_comes_back_on_a_kept_greenlet() -> None:
    seen = []

    def work(value: int) -> int:
        seen.append(getcurrent())
        return awaits(value)

    assert await run_in_greenlet(work, 1) == 2
    assert await run_in_greenlet(work, value=41) == 42
    assert seen[0] is seen[1]  # the same greenlet, kept between the calls
    assert seen[0] is not getcurrent() and not seen[0].dead


async def test_errors_of_the_work_and_of_its_awaitables_come_back_as_raised() -> None:
    async def refuses() -> None:
        raise LookupError("from the awaitable")

    def catches() -> str:
        try:
            await_(refuses())
        except LookupError as error:  # raised inside the work, at its await_
            return f"caught {error}"
        return "not raised"

    def fails() -> None:
        awaits(0)
        raise ValueError("from the work")

    assert await run_in_greenlet(catches) == "caught from the awaitable"
    with pytest.raises(ValueError, match="from the work"):
        await run_in_greenlet(fails)
    assert await run_in_greenlet(awaits, 6) == 7  # its greenlet serves the next call


async def test_the_work_sees_the_caller_s_context_variables() -> None:
    def reads() -> str:
        awaits(0)
        return request_name.get("unset")

    async def in_a_request(name: str) -> str:
        request_name.set(name)
        return await run_in_greenlet(reads)

    assert await asyncio.gather(in_a_request("a"), in_a_request("b")) == ["a", "b"]
    assert await run_in_greenlet(reads) == "unset"  # this task set none


async def test_a_cancelled_caller_cancels_its_work_at_its_await() -> None:
    started = asyncio.Event()
    stopped: list[str] = []

    def waits() -> None:
        started.set()
        try:
            await_(asyncio.Event().wait())
        except asyncio.CancelledError:
            stopped.append("cancelled inside the work")
            raise

    caller = asyncio.ensure_future(run_in_greenlet(waits))
    await started.wait()
    caller.cancel()
    with pytest.raises(asyncio.CancelledError):
        await caller
    assert stopped == ["cancelled inside the work"]
    assert await run_in_greenlet(awaits, 1) == 2


async def test_concurrent_calls_each_have_a_greenlet_and_at_most_idle_max_are_kept(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(greenlet_pool, "IDLE_MAX", 2)
    monkeypatch.setattr(greenlet_pool._idle, "greenlets", [])
    release, all_running = asyncio.Event(), asyncio.Event()
    running = set()

    def work() -> None:
        running.add(getcurrent())
        if len(running) == 4:
            all_running.set()
        await_(release.wait())

    calls = [asyncio.ensure_future(run_in_greenlet(work)) for _ in range(4)]
    await asyncio.wait_for(all_running.wait(), 10)  # four greenlets, each at its await
    release.set()
    await asyncio.gather(*calls)
    assert len(greenlet_pool._idle.greenlets) == 2
