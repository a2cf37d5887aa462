"""The MySQL connection pools against the real MariaDB: which round trips a read and a unit of
work cost, what becomes of a read's connection when the read is cut short, and how a connection
the server dropped is found (DB_POOL_PRE_PING with DB_POOL_PING_IDLE_SECONDS)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
from prometheus_client import REGISTRY
from sqlalchemy import text
from sqlalchemy.engine import Connection
from sqlalchemy.exc import OperationalError

from app.db import Database, DatabaseTimeoutError, PoolUseSampler
from tests.conftest import make_settings
from tests.waiting import eventually


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


def _rollbacks_seen(connection: Connection) -> int:
    """`_rollbacks` for `Database.read()`'s synchronous work."""
    return int(connection.execute(text("SHOW SESSION STATUS LIKE 'Com_rollback'")).one()[1])


def _server_connection_id(connection: Connection) -> int:
    return int(connection.execute(text("SELECT CONNECTION_ID()")).scalar_one())


def _count_users(connection: Connection) -> int:
    return int(connection.execute(TABLE_READ).scalar_one())


TABLE_READ = text("SELECT COUNT(*) FROM users")


async def test_a_read_costs_one_round_trip(one_connection_pool: Database) -> None:
    """`read()` uses the autocommit pool: a read opens no transaction, so it ends without a
    ROLLBACK (each pool has one connection here, so its counter is the reads')."""
    database = one_connection_pool
    first = await database.read(_rollbacks_seen)
    for _ in range(5):
        await database.read(_count_users)
    assert await database.read(_rollbacks_seen) == first


@pytest.fixture
async def one_connection_bounded_pool(mysql_url: str) -> AsyncIterator[Database]:
    database = Database(make_settings(mysql_url, db_pool_size=1, db_max_overflow=0, db_timeout=0.5))
    try:
        yield database
    finally:
        await database.dispose()


def _sleep_then_answer(connection: Connection) -> int:
    return int(connection.execute(text("SELECT SLEEP(3) + 7")).scalar_one())


def _answer(connection: Connection) -> int:
    return int(connection.execute(text("SELECT 42")).scalar_one())


async def _cut_by_its_bound(database: Database) -> None:
    with pytest.raises(DatabaseTimeoutError):  # DB_TIMEOUT, 0.5 s here
        await database.read(_sleep_then_answer)


async def _cancelled_from_outside(database: Database) -> None:
    with pytest.raises(TimeoutError):  # its request cancelled (its client left) at 0.3 s
        await asyncio.wait_for(database.read(_sleep_then_answer), 0.3)


@pytest.mark.parametrize(
    "cut_short", [_cut_by_its_bound, _cancelled_from_outside], ids=["time_bound", "cancelled"]
)
async def test_a_read_cut_short_mid_statement_is_discarded_not_pooled(
    one_connection_bounded_pool: Database, cut_short
) -> None:
    """A read cut off mid-statement, by DB_TIMEOUT (DatabaseTimeoutError) or by its request's
    cancellation (which propagates), has its connection, whose late answer is still coming,
    closed, not pooled: the next read on the one-connection pool gets a new connection and its
    own answer."""
    database = one_connection_bounded_pool
    before = await database.read(_server_connection_id)
    await cut_short(database)
    assert await database.read(_answer) == 42  # not the late 7 of the cut-off read
    assert await database.read(_server_connection_id) != before
    assert database.read_engine.sync_engine.pool.checkedout() == 0  # type: ignore[attr-defined]


async def test_an_error_of_the_work_keeps_its_connection_pooled(
    one_connection_pool: Database,
) -> None:
    """An error the work raises after its statements (a 404's NotFoundError) is raised as is,
    and the connection, whose answers were all read, goes back to the pool."""
    database = one_connection_pool
    before = await database.read(_server_connection_id)

    def read_then_fail(connection: Connection) -> None:
        _count_users(connection)
        raise LookupError("no such row")

    with pytest.raises(LookupError, match="no such row"):
        await database.read(read_then_fail)
    assert await database.read(_server_connection_id) == before


async def test_a_snapshot_read_and_a_unit_of_work_end_with_one_rollback(
    one_connection_pool: Database,
) -> None:
    """Off autocommit, a SELECT opens an InnoDB transaction that MariaDB's status does not
    report, so every block is ended by one ROLLBACK (not two: the pool does not repeat it)."""
    database = one_connection_pool
    async with database.session() as session:
        first = await _rollbacks(session)
    for _ in range(3):
        await database.read_snapshot(_count_users)
    async with database.session() as session:
        await session.execute(TABLE_READ)
    async with database.session() as session:
        # The probe block itself, three snapshots, one session: one ROLLBACK each.
        assert await _rollbacks(session) - first == 5


async def test_an_explicit_transaction_on_the_autocommit_pool_is_rolled_back(
    one_connection_pool: Database,
) -> None:
    def start_a_transaction(connection: Connection) -> int:
        first = _rollbacks_seen(connection)
        connection.execute(text("START TRANSACTION"))
        _count_users(connection)
        return first

    def open_transactions(connection: Connection) -> int:
        return int(
            connection.execute(
                text(
                    "SELECT COUNT(*) FROM information_schema.innodb_trx "
                    "WHERE trx_mysql_thread_id = CONNECTION_ID()"
                )
            ).scalar_one()
        )

    first = await one_connection_pool.read(start_a_transaction)
    assert await one_connection_pool.read(_rollbacks_seen) - first == 1
    assert await one_connection_pool.read(open_transactions) == 0  # nothing left open


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


async def test_the_pool_use_gauge_follows_the_connections_checked_out(
    one_connection_pool: Database,
) -> None:
    """`db_pool_connections_in_use`, sampled by `PoolUseSampler`: 1 while a connection is out
    of the pool, 0 once it is back."""
    database = one_connection_pool
    sampler = PoolUseSampler(database, interval=0.01)

    async def in_use_is(count: int) -> bool:
        return REGISTRY.get_sample_value("db_pool_connections_in_use") == count

    sampler.start()
    try:
        async with database.read_engine.connect() as connection:
            await connection.execute(text("SELECT 1"))
            assert database.connections_in_use() == 1
            await eventually(lambda: in_use_is(1))
        assert database.connections_in_use() == 0
        await eventually(lambda: in_use_is(0))
    finally:
        await sampler.stop()
