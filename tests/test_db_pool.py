"""The MySQL connection pools against the real MariaDB: which round trips a read and a unit of
work cost, and how a connection the server dropped is found (DB_POOL_PRE_PING with
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


async def _rollbacks(connection) -> int:
    """ROLLBACKs the server has had on this connection."""
    row = await connection.execute(text("SHOW SESSION STATUS LIKE 'Com_rollback'"))
    return int(row.one()[1])


TABLE_READ = text("SELECT COUNT(*) FROM users")


async def test_a_read_costs_one_round_trip(one_connection_pool: Database) -> None:
    """`reading()` uses the autocommit pool: a read opens no transaction, so the block ends
    without a ROLLBACK (each pool has one connection here, so its counter is the reads')."""
    database = one_connection_pool
    async with database.reading() as connection:
        first = await _rollbacks(connection)
    for _ in range(5):
        async with database.reading() as connection:
            await connection.execute(TABLE_READ)
    async with database.reading() as connection:
        assert await _rollbacks(connection) == first


async def test_a_snapshot_read_and_a_unit_of_work_end_with_one_rollback(
    one_connection_pool: Database,
) -> None:
    """Off autocommit, a SELECT opens an InnoDB transaction that MariaDB's status does not
    report, so every block is ended by one ROLLBACK (not two: the pool does not repeat it)."""
    database = one_connection_pool
    async with database.session() as session:
        first = await _rollbacks(session)
    for _ in range(3):
        async with database.reading(snapshot=True) as connection:
            await connection.execute(TABLE_READ)
    async with database.session() as session:
        await session.execute(TABLE_READ)
    async with database.session() as session:
        # The probe block itself, three snapshots, one session: one ROLLBACK each.
        assert await _rollbacks(session) - first == 5


async def test_an_explicit_transaction_on_the_autocommit_pool_is_rolled_back(
    one_connection_pool: Database,
) -> None:
    async with one_connection_pool.reading() as connection:
        first = await _rollbacks(connection)
        await connection.execute(text("START TRANSACTION"))
        await connection.execute(TABLE_READ)
    async with one_connection_pool.reading() as connection:
        assert await _rollbacks(connection) - first == 1
        row = await connection.execute(
            text(
                "SELECT COUNT(*) FROM information_schema.innodb_trx "
                "WHERE trx_mysql_thread_id = CONNECTION_ID()"
            )
        )
        assert row.scalar_one() == 0  # nothing left open on the pooled connection


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
