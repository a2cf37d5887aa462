"""app/aiosqlite_stop.py: a second `stop()` of an aiosqlite connection no longer leaves a close
waiting forever, alone and under SQLAlchemy's terminate of a cancelled query."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from pathlib import Path

import aiosqlite
import pytest
from sqlalchemy import event, text
from sqlalchemy.ext.asyncio import create_async_engine

from app import aiosqlite_stop
from tests.waiting import eventually

# Patched, every wait below ends in milliseconds. Upstream, the close never ends: this bound only
# says how long the test looks before calling it hung.
HUNG_AFTER_SECONDS = 2.0


class Blocker:
    """A SQL function, `wait_release()`, that holds aiosqlite's worker thread until released."""

    def __init__(self) -> None:
        self.entered = threading.Event()
        self.released = threading.Event()

    def __call__(self) -> int:
        self.entered.set()
        self.released.wait(30)  # the guard of a test that failed before releasing it
        return 1

    async def wait_entered(self) -> None:
        assert await asyncio.to_thread(self.entered.wait, 10), "the query never started"


@pytest.fixture(params=["patched", "upstream"])
def patched(request) -> Iterator[bool]:
    if request.param == "patched":
        aiosqlite_stop.apply()
    else:
        aiosqlite_stop.remove()
    try:
        yield request.param == "patched"
    finally:
        aiosqlite_stop.apply()  # as app.db leaves it for every other test


async def ends(awaitable) -> bool:
    """Whether `awaitable` ends (in any way) within HUNG_AFTER_SECONDS."""
    try:
        await asyncio.wait_for(asyncio.shield(asyncio.ensure_future(awaitable)), HUNG_AFTER_SECONDS)
    except TimeoutError:
        return False
    except Exception:
        return True
    return True


async def test_a_close_after_a_stop_ends(patched: bool, tmp_path: Path) -> None:
    """SQLAlchemy's force close is `stop()` while the worker is busy; the graceful `close()`
    that follows stops again and waits for an answer."""
    blocker = Blocker()
    connection = await aiosqlite.connect(tmp_path / "stop.sqlite")
    await connection.create_function("wait_release", 0, blocker)
    busy = asyncio.ensure_future(connection.execute("SELECT wait_release()"))
    await blocker.wait_entered()
    connection.stop()
    closing = asyncio.ensure_future(connection.close())
    # One loop turn, not a guess at timing: the close's first step has no await before its own
    # stop(), so it has queued that stop when this returns. Released earlier, the worker could
    # read the first stop before the close starts, and the close would find nothing to do.
    await asyncio.sleep(0)
    assert not closing.done()
    blocker.released.set()
    await asyncio.gather(busy, return_exceptions=True)
    assert await ends(closing) is patched
    if not patched:
        closing.cancel()  # its future is never answered: leave no task behind


async def test_a_query_cancelled_twice_leaves_no_task_behind(patched: bool, tmp_path: Path) -> None:
    """The hang as it happened: a query is cancelled, SQLAlchemy's terminate waits on a graceful
    close under `shield`, and a second cancel (a shutdown's) makes it stop the connection too.
    Upstream, the graceful close's task never ends, and `asyncio.run()` waits for it forever."""
    blocker = Blocker()
    engine = create_async_engine(f"sqlite+aiosqlite:///{tmp_path / 'terminate.sqlite'}")

    @event.listens_for(engine.sync_engine, "connect")
    def add_blocker(dbapi_connection, _record) -> None:
        dbapi_connection.create_function("wait_release", 0, blocker)

    async def query() -> None:
        async with engine.connect() as connection:
            await connection.execute(text("SELECT wait_release()"))

    def graceful_closes() -> list[asyncio.Task]:
        return [
            task
            for task in asyncio.all_tasks()
            if "_terminate_graceful_close" in repr(task.get_coro())
        ]

    task = asyncio.create_task(query())
    await blocker.wait_entered()
    task.cancel()

    async def terminate_waits() -> bool:  # a few loop turns: the cancel reaches terminate
        return bool(graceful_closes())

    await eventually(terminate_waits, interval=0.001)
    closes = graceful_closes()
    task.cancel()
    blocker.released.set()
    await asyncio.gather(task, return_exceptions=True)
    assert await ends(asyncio.gather(*closes, return_exceptions=True)) is patched
    if not patched:
        for close in closes:
            close.cancel()
    await engine.dispose()
