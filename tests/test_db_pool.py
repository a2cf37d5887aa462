"""The MySQL connection pool against the real MariaDB: which round trips a unit of work costs,
and how a connection the server dropped is found (DB_POOL_PRE_PING with
DB_POOL_PING_IDLE_SECONDS)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from sqlalchemy import text
from sqlalchemy.exc import OperationalError

from app.db import Database
from tests.conftest import make_settings


async def _connection_id(database: Database) -> int:
    async with database.session() as session:
        return int((await session.execute(text("SELECT CONNECTION_ID()"))).scalar_one())


async def _kill(database: Database, connection_id: int) -> None:
    """Drop a connection on the server's side, as a restart or a failover does."""
    killer = Database(make_settings(str(database.engine.url.render_as_string(False))))
    try:
        async with killer.engine.connect() as connection:
            await connection.execute(text(f"KILL CONNECTION {connection_id}"))
    finally:
        await killer.dispose()


@pytest.fixture
async def one_connection_pool(
    mysql_url: str, request: pytest.FixtureRequest
) -> AsyncIterator[Database]:
    idle_seconds = getattr(request, "param", 0.001)
    database = Database(
        make_settings(
            mysql_url, db_pool_size=1, db_max_overflow=0, db_pool_ping_idle_seconds=idle_seconds
        )
    )
    try:
        yield database
    finally:
        await database.dispose()


async def test_a_read_costs_one_rollback_not_two(one_connection_pool: Database) -> None:
    """The pool does not repeat the ROLLBACK the session already sent (a round trip each)."""

    async def rollbacks() -> int:
        async with one_connection_pool.session() as session:
            row = await session.execute(text("SHOW SESSION STATUS LIKE 'Com_rollback'"))
            return int(row.one()[1])

    first = await rollbacks()
    for _ in range(5):
        await _connection_id(one_connection_pool)
    # One connection throughout: five reads, each ended by one ROLLBACK (plus the probe's own).
    assert await rollbacks() - first == 6


@pytest.mark.parametrize("one_connection_pool", [0.001], indirect=True)
async def test_a_connection_idle_past_the_bound_is_pinged_and_replaced(
    one_connection_pool: Database,
) -> None:
    dropped = await _connection_id(one_connection_pool)
    await _kill(one_connection_pool, dropped)
    # Idle for longer than 1 ms by now: the checkout pings it, finds it dead, opens another.
    assert await _connection_id(one_connection_pool) != dropped


@pytest.mark.parametrize("one_connection_pool", [3600], indirect=True)
async def test_a_connection_in_steady_use_is_not_pinged(one_connection_pool: Database) -> None:
    """The trade-off of DB_POOL_PING_IDLE_SECONDS: a connection used a moment ago is trusted,
    so a drop within that moment costs one failed unit of work; the pool then replaces it."""
    dropped = await _connection_id(one_connection_pool)
    await _kill(one_connection_pool, dropped)
    with pytest.raises(OperationalError):
        await _connection_id(one_connection_pool)
    assert await _connection_id(one_connection_pool) != dropped
