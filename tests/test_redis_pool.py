"""The Redis pool (app/redis_client.py): bounded, callers wait their turn up to a timeout, and
every checkout's slot comes back, also when connecting fails. Real Redis."""

from __future__ import annotations

import asyncio

import pytest
from redis.exceptions import ConnectionError as RedisConnectionError

from app.redis_client import BoundedWaitConnectionPool, _is_pool_wait
from tests.e2e.server import free_port
from tests.waiting import eventually


async def test_a_full_pool_makes_callers_wait_then_time_out(redis_url) -> None:
    pool = BoundedWaitConnectionPool.from_url(redis_url, max_connections=2, timeout=0.3)
    try:
        first, second = await pool.get_connection(), await pool.get_connection()
        waiting = asyncio.create_task(pool.get_connection())

        async def queued() -> bool:  # waiting for a slot behind the two checkouts
            return bool(pool._free._waiters)

        await eventually(queued, timeout=5, interval=0.001)
        assert not waiting.done()
        await pool.release(first)
        third = await asyncio.wait_for(waiting, 1)
        assert third is first  # the released connection, reused
        with pytest.raises(RedisConnectionError, match="No connection available") as refused:
            await pool.get_connection()
        assert _is_pool_wait(refused.value)  # load, not a Redis failure (the circuit stays shut)
        await pool.release(second)
        await pool.release(third)
        # Both slots are free again: two checkouts at once, no wait.
        again = [await asyncio.wait_for(pool.get_connection(), 0.1) for _ in range(2)]
        for connection in again:
            await pool.release(connection)
    finally:
        await pool.aclose()


async def test_a_failed_connect_gives_its_slot_back() -> None:
    # Nothing listens on this port: every checkout fails to connect.
    pool = BoundedWaitConnectionPool.from_url(
        f"redis://127.0.0.1:{free_port()}/0", max_connections=1, timeout=0.5
    )
    try:
        for _ in range(3):
            with pytest.raises(RedisConnectionError) as failed:
                await pool.get_connection()
            # A refused connection each time, never a wait for the pool's one slot.
            assert not _is_pool_wait(failed.value)
    finally:
        await pool.aclose()


async def test_releasing_a_connection_twice_does_not_add_a_slot(redis_url) -> None:
    pool = BoundedWaitConnectionPool.from_url(redis_url, max_connections=1, timeout=0.2)
    try:
        connection = await pool.get_connection()
        await pool.release(connection)
        with pytest.raises(KeyError):
            await pool.release(connection)
        held = await pool.get_connection()
        with pytest.raises(RedisConnectionError, match="No connection available"):
            await pool.get_connection()
        await pool.release(held)
    finally:
        await pool.aclose()


async def test_the_redis_py_internals_the_pool_uses_still_mean_the_same(redis_url) -> None:
    """BoundedWaitConnectionPool relies on two internals of redis-py's ConnectionPool
    (pyproject caps redis below 9 for them): `get_available_connection()` checks a connection
    out without waiting (reusing a released one) and records it in `_in_use_connections`,
    which `release()` empties again."""
    pool = BoundedWaitConnectionPool.from_url(redis_url, max_connections=2, timeout=0.3)
    try:
        connection = pool.get_available_connection()
        assert connection in pool._in_use_connections
        await pool.ensure_connection(connection)
        await pool.release(connection)
        assert connection not in pool._in_use_connections
        assert pool.get_available_connection() is connection  # reused, not a new one
        await pool.release(connection)
        checked_out = await pool.get_connection()
        assert checked_out in pool._in_use_connections
        await pool.release(checked_out)
        assert not pool._in_use_connections
    finally:
        await pool.aclose()
