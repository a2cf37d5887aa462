"""The database engine, its connection pool, and the session lifecycle.

One `Database` per worker process, opened and disposed by the lifespan (app.lifespan.serving,
run by `while_serving`).
Production runs MySQL/MariaDB through aiomysql; the embedded default is SQLite through aiosqlite.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Concatenate, ParamSpec, TypeVar

# Called through its module: tracing (app.tracing) instruments the engines it creates by
# wrapping that module attribute.
import sqlalchemy.ext.asyncio
from sqlalchemy import event, text
from sqlalchemy.engine import Connection, Engine, make_url
from sqlalchemy.exc import DBAPIError, DisconnectionError
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
)
from sqlalchemy.orm import Session
from sqlalchemy.pool import QueuePool

from app.cancellation import BackgroundTask
from app.deadlines import BoundExpired, within
from app.greenlet_pool import run_in_greenlet
from app.resources import resource_path
from app.settings import Settings

if TYPE_CHECKING:
    from alembic.config import Config as AlembicConfig
    from sqlalchemy.pool import ConnectionPoolEntry, PoolProxiedConnection

log = logging.getLogger(__name__)
P = ParamSpec("P")
T = TypeVar("T")


# The loop time by which the current request's database work must be done (set per request by
# `start_database_deadline`): all of a request's sessions share one `DB_TIMEOUT`, not one each.
_deadline: ContextVar[float | None] = ContextVar("database_deadline", default=None)


def start_database_deadline(seconds: float) -> None:
    """Bound all database work of the current task (a request) to `seconds` from now."""
    _deadline.set(asyncio.get_running_loop().time() + seconds)


class DatabaseTimeoutError(Exception):
    """A unit of database work took longer than `DB_TIMEOUT` (a hung or overloaded server).
    Its connections were discarded, not returned to the pool. Answered as 503."""


def enable_sqlite_integrity(dbapi_connection: Any, _record: Any) -> None:
    """Foreign keys and a busy timeout on each new SQLite connection (the app and Alembic):
    SQLite ignores foreign keys (and so ON DELETE CASCADE) unless asked, per connection."""
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA busy_timeout=5000")
    cursor.close()


def _limit_statement_time(engine: AsyncEngine, seconds: float) -> Callable[[Any, Any], None]:
    """A `connect` listener setting the server-side statement limit of each new connection:
    MariaDB's `max_statement_time` (seconds, every statement), MySQL's `max_execution_time`
    (milliseconds, SELECT only)."""

    def on_connect(dbapi_connection: Any, _record: Any) -> None:
        cursor = dbapi_connection.cursor()
        if getattr(engine.dialect, "is_mariadb", False):
            cursor.execute(f"SET SESSION max_statement_time = {float(seconds)}")
        else:
            cursor.execute(f"SET SESSION max_execution_time = {int(seconds * 1000)}")
        cursor.close()

    return on_connect


def _connect_or_operational_error(
    dialect: Any, _record: Any, cargs: list[Any], cparams: dict[str, Any]
) -> Any:
    """Open a DBAPI connection; a failure of the socket itself while connecting (a server
    killed or restarting mid-handshake: aiomysql raises `RuntimeError("Transport does not
    expose socket instance")` or an `OSError`) becomes the driver's `OperationalError`, which
    SQLAlchemy wraps and the envelope answers with 503, like every other lost connection."""
    try:
        return dialect.loaded_dbapi.connect(*cargs, **cparams)
    except (RuntimeError, OSError) as error:
        raise dialect.loaded_dbapi.OperationalError(
            2013, f"lost connection while connecting: {type(error).__name__}"
        ) from error


def create_engine(settings: Settings, *, autocommit: bool = False) -> AsyncEngine:
    """An `AsyncEngine` for `settings.database_url` with the configured pool.

    SQLite: the file's folder is created, foreign keys are enforced and WAL journaling lets
    several workers read while one writes. MySQL: utf8mb4, and the pool settings
    `DB_POOL_SIZE`, `DB_MAX_OVERFLOW`, `DB_POOL_TIMEOUT` (seconds), `DB_POOL_RECYCLE` (seconds)
    and `DB_POOL_PRE_PING` (with `DB_POOL_PING_IDLE_SECONDS`). With `autocommit`, every
    connection runs in the server's autocommit mode, and the pool has no overflow (MySQL only:
    the read engine of `Database.read()`).

    Round trips: the pool does not roll connections back when they come back (every connection
    returns from a `Session` or `Connection` block, which has already ended its transaction),
    and a block on an autocommit connection ends without a ROLLBACK unless it started a
    transaction (`_rollback_only_in_a_transaction`): a read there is one round trip.
    """
    url = make_url(settings.database_url)
    if url.get_backend_name() == "sqlite":
        from app import aiosqlite_stop

        aiosqlite_stop.apply()  # or a cancelled invalidation hangs the loop's shutdown
        sqlite_path = settings.sqlite_path
        if sqlite_path is not None:
            sqlite_path.parent.mkdir(parents=True, exist_ok=True)
        engine = sqlalchemy.ext.asyncio.create_async_engine(url, echo=settings.db_echo)
        event.listen(engine.sync_engine, "connect", enable_sqlite_integrity)
        return engine
    connect_args: dict[str, object] = {}
    is_mysql = url.get_backend_name() in ("mysql", "mariadb")
    if is_mysql and "charset" not in url.query:
        connect_args["charset"] = "utf8mb4"
    if is_mysql:
        connect_args["connect_timeout"] = settings.db_connect_timeout
    options: dict[str, Any] = {"isolation_level": "AUTOCOMMIT"} if autocommit else {}
    engine = sqlalchemy.ext.asyncio.create_async_engine(
        url,
        echo=settings.db_echo,
        pool_size=settings.db_pool_size,
        # The read pool serves HTTP_CONCURRENCY requests (DB_POOL_SIZE by default): no overflow,
        # so a worker holds at most 2 x DB_POOL_SIZE + DB_MAX_OVERFLOW connections.
        max_overflow=0 if autocommit else settings.db_max_overflow,
        pool_timeout=settings.db_pool_timeout,
        pool_recycle=settings.db_pool_recycle,
        pool_pre_ping=settings.db_pool_pre_ping and settings.db_pool_ping_idle_seconds == 0,
        pool_reset_on_return=None,
        connect_args=connect_args,
        **options,
    )
    if settings.db_pool_pre_ping and settings.db_pool_ping_idle_seconds > 0:
        ping_idle = PingIdleConnections(engine, settings.db_pool_ping_idle_seconds)
        event.listen(engine.sync_engine.pool, "checkin", ping_idle.checked_in)
        event.listen(engine.sync_engine.pool, "checkout", ping_idle.checked_out)
    if is_mysql:
        event.listen(engine.sync_engine, "do_connect", _connect_or_operational_error)
        event.listen(
            engine.sync_engine,
            "connect",
            _limit_statement_time(engine, settings.db_statement_timeout),
        )
        _rollback_only_in_a_transaction(engine)
    return engine


def _rollback_only_in_a_transaction(engine: AsyncEngine) -> None:
    """On an autocommit connection, skip the ROLLBACK that ends a block unless the server
    reports a transaction started on it (`START TRANSACTION`).

    SQLAlchemy ends every block with a ROLLBACK, which MySQL drivers send even in autocommit
    mode: a read then cost two round trips instead of one (bench/, `Com_rollback`). Every OK
    packet carries the server's status, which the drivers keep (`get_autocommit()`,
    `get_transaction_status()`, no round trip). Only autocommit connections are spared: with
    autocommit off, a plain SELECT opens an InnoDB transaction (a read view) that MariaDB does
    not report in that status (tests/test_db_pool.py), and it must be rolled back before the
    connection is reused.
    """
    dialect = engine.sync_engine.dialect
    rollback = dialect.do_rollback

    def do_rollback(dbapi_connection: Any) -> None:
        driver: Any = getattr(dbapi_connection, "_connection", None)  # under the adapter
        try:
            idle_autocommit = driver.get_autocommit() and not driver.get_transaction_status()
        except (AttributeError, TypeError):
            idle_autocommit = False
        if not idle_autocommit:
            rollback(dbapi_connection)

    dialect.do_rollback = do_rollback  # type: ignore[method-assign]


class PingIdleConnections:
    """Pessimistic disconnect handling for connections that sat idle: SQLAlchemy's
    `pool_pre_ping`, applied only to a connection idle in the pool for more than
    `idle_seconds` (the "custom pessimistic ping" of SQLAlchemy's pooling docs). A failed ping
    raises `DisconnectionError`, on which the pool discards the connection and checks out
    another (a new one if need be)."""

    def __init__(self, engine: AsyncEngine, idle_seconds: float) -> None:
        self.dialect = engine.sync_engine.dialect
        self.idle_seconds = idle_seconds

    def checked_in(self, _dbapi_connection: Any, record: ConnectionPoolEntry) -> None:
        record.info[IDLE_SINCE] = time.monotonic()

    def checked_out(
        self, dbapi_connection: Any, record: ConnectionPoolEntry, _proxy: PoolProxiedConnection
    ) -> None:
        idle_since = record.info.get(IDLE_SINCE)
        if idle_since is None or time.monotonic() - idle_since <= self.idle_seconds:
            return
        try:
            alive = self.dialect.do_ping(dbapi_connection)
        except Exception as error:
            raise DisconnectionError("pooled connection failed its ping") from error
        if not alive:
            raise DisconnectionError("pooled connection failed its ping")


IDLE_SINCE = "idle_since"


POOL_SAMPLE_SECONDS = 0.25


class PoolUseSampler(BackgroundTask):
    """Sets `db_pool_connections_in_use` to `database.connections_in_use()` every `interval`
    seconds while started. Sampled, not counted: the gauge changed on every checkout and
    checkin (two pool event listeners, two metric writes) cost 1.2% of a `GET user`'s
    instructions (callgrind, docs/performance.md); a scrape sees a value at most `interval`
    old. app.metrics is imported here, not with this module: `serve --migrate` imports this
    module in the supervisor, which must make no metric (app/metric_files.py)."""

    name = "pool-use-sampler"

    def __init__(self, database: Database, interval: float = POOL_SAMPLE_SECONDS) -> None:
        super().__init__()
        self.database = database
        self.interval = interval

    async def run(self) -> None:
        from app.metrics import DB_CONNECTIONS_IN_USE

        while True:
            DB_CONNECTIONS_IN_USE.set(self.database.connections_in_use())
            await asyncio.sleep(self.interval)


class Database:
    """The engine and session factory of one worker.

    Arguments:
        settings: the service settings; `database_url` and the `db_pool_*` knobs are read.
    """

    def __init__(self, settings: Settings) -> None:
        self.engine = create_engine(settings)
        # Reads that change nothing (`read()`) need no transaction: on MySQL they get a pool
        # of their own, in autocommit mode, where a read is one round trip (no ROLLBACK).
        self.read_engine = (
            self.engine if settings.is_sqlite else create_engine(settings, autocommit=True)
        )
        # A Session class of this database's own: ORM event listeners bound to it (e.g. the
        # credential cache's) see this app's sessions only, not another app's in this process.
        self.session_class: type[Session] = type("DatabaseSession", (Session,), {})
        self.sessionmaker = async_sessionmaker(
            self.engine, expire_on_commit=False, sync_session_class=self.session_class
        )
        self._is_sqlite = settings.is_sqlite
        self.timeout = settings.db_timeout
        self._after_unit_of_work: dict[str, Callable[[], Awaitable[None]]] = {}

    def connections_in_use(self) -> int:
        """Connections checked out of this database's pools now (a pool that keeps one
        connection and no count, in-memory SQLite's, counts 0)."""
        pools = {self.engine.sync_engine.pool, self.read_engine.sync_engine.pool}
        return sum(pool.checkedout() for pool in pools if isinstance(pool, QueuePool))

    def after_unit_of_work(self, flag: str, hook: Callable[[], Awaitable[None]]) -> None:
        """Run `hook` after every `session()` block whose session has `info[flag]` set (by the
        code or an ORM event that changed something others keep, e.g. credentials)."""
        self._after_unit_of_work[flag] = hook

    async def connect(self) -> None:
        """Open one connection to fail fast on a wrong URL; switch SQLite to WAL journaling.

        A MySQL server that cannot be reached (refused, lost, timed out: an outage, not a
        wrong setting) is logged in one line and the worker serves anyway, answering 503 and
        `/readyz` 503 until the server is back: a worker started during an outage (a restart,
        a new container) must not exit and leave its sockets' clients waiting. Any other
        error (access denied, unknown database, a bad URL) raises.
        """
        try:
            async with self.engine.connect() as connection:
                if self._is_sqlite:
                    await connection.execute(text("PRAGMA journal_mode=WAL"))
                else:
                    await connection.execute(text("SELECT 1"))
        except DBAPIError as error:
            if self._is_sqlite or not _is_unreachable(error):
                raise
            log.warning(
                "database unreachable at startup (%s); serving, with 503s until it answers",
                describe_database_error(error),
            )

    @asynccontextmanager
    async def session(self, time_limit: float | None = None) -> AsyncIterator[AsyncSession]:
        """A session for one unit of work; rolled back if the block raises.

        The whole block (waiting for a pooled connection, every statement, the commit) must
        end within `time_limit` seconds (default `DB_TIMEOUT`), and within what is left of the
        request's deadline (`start_database_deadline`). Raises `DatabaseTimeoutError`
        otherwise; the session's connections are then closed at the socket and dropped from
        the pool (a hung server would never answer their rollback).
        """
        session = self.sessionmaker()
        try:
            async with self._bounded(session, time_limit):
                yield session
        finally:
            for flag in [flag for flag in self._after_unit_of_work if session.info.get(flag)]:
                await self._after_unit_of_work[flag]()

    async def read(
        self, work: Callable[Concatenate[Connection, P], T], /, *args: P.args, **kwargs: P.kwargs
    ) -> T:
        """`work(connection, *args, **kwargs)`: reads that change nothing (Core queries into
        read models, `app.services.views`), written as a synchronous function of a
        `sqlalchemy.Connection`, without an ORM session to set up and tear down (a third of a
        by-id read's CPU). Returns what `work` returns and raises what it raises.

        The checkout, the statements and the release run in one greenlet (SQLAlchemy's
        `run_sync` pattern, the checkout and release included), where an `AsyncConnection`
        spawns one for each: every greenlet maps, touches and unmaps a fresh 16 KiB frame
        stack, and the by-id read served 18-23% more requests a second with one greenlet
        than with three (docs/performance.md).

        On MySQL the connection comes from the read engine, in autocommit mode: each statement
        sees the latest committed data and the release costs no round trip. Bounded in time as
        `session()` is, with the same errors (`DatabaseTimeoutError`); a read cancelled
        mid-statement (its time bound, or its client gone) has its connection closed at the
        socket, never returned to the pool with half an answer on it.
        """
        return await self._read(self.read_engine, work, args, kwargs)

    async def read_snapshot(
        self, work: Callable[Concatenate[Connection, P], T], /, *args: P.args, **kwargs: P.kwargs
    ) -> T:
        """`read()` in one transaction, ended by a ROLLBACK: every statement of `work` reads
        one consistent snapshot (for a read of several statements that must agree)."""
        return await self._read(self.engine, work, args, kwargs)

    async def _read(
        self,
        engine: AsyncEngine,
        work: Callable[..., T],
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
    ) -> T:
        # `_bounded`'s time bound, on the worker's one timer for its bounds (app.deadlines):
        # `asyncio.timeout` per read cost 2% of a `GET user` (callgrind). The greenlet
        # invalidates the connection when the bound cuts it short.
        limit = self._time_left(None)
        try:
            return await within(
                limit,
                run_in_greenlet(_work_on_a_connection, engine.sync_engine, work, args, kwargs),
            )
        except BoundExpired as error:
            raise _exceeded(limit) from error

    def _time_left(self, time_limit: float | None) -> float:
        """Seconds the next unit of work may take: `time_limit` (default `DB_TIMEOUT`), within
        what is left of the request's deadline. Raises `DatabaseTimeoutError` if none is."""
        limit = time_limit or self.timeout
        deadline_at = _deadline.get()
        if deadline_at is not None:
            limit = min(limit, deadline_at - asyncio.get_running_loop().time())
            if limit <= 0:
                raise DatabaseTimeoutError("the request's database time is used up")
        return limit

    @asynccontextmanager
    async def _bounded(
        self, session: AsyncSession, time_limit: float | None
    ) -> AsyncIterator[None]:
        # The time bound of `session()`: past it, DatabaseTimeoutError and the session's
        # connections discarded; they go back to the pool at the end otherwise (bounded by
        # `CLEANUP_SECONDS`).
        limit = self._time_left(time_limit)
        deadline = asyncio.timeout(limit)
        try:
            async with deadline:
                yield
        except TimeoutError as error:
            if not deadline.expired():  # a TimeoutError of the block's own, not ours
                raise
            await _discard(session)
            raise _exceeded(limit) from error
        finally:
            await _release(session)

    async def ping(self, time_limit: float) -> None:
        """`SELECT 1` within `time_limit` seconds. Raises `DatabaseTimeoutError` or the
        driver's error."""
        async with self.session(time_limit) as session:
            await session.execute(text("SELECT 1"))

    async def dispose(self) -> None:
        await self.engine.dispose()
        if self.read_engine is not self.engine:
            await self.read_engine.dispose()


CLEANUP_SECONDS = 1.0


def _exceeded(limit: float) -> DatabaseTimeoutError:
    """The error of database work cut off by its time bound (logged: its connections are
    discarded)."""
    log.warning("database work exceeded %.1f s; discarding its connections", limit)
    return DatabaseTimeoutError(f"database work exceeded {limit} s")


def _work_on_a_connection(
    engine: Engine, work: Callable[..., T], args: tuple[Any, ...], kwargs: dict[str, Any]
) -> T:
    """`Database.read()`'s greenlet: check a connection out, run `work` on it, release it."""
    connection = engine.connect()
    try:
        result = work(connection, *args, **kwargs)
    except Exception:
        _close_or_invalidate(connection)
        raise
    except BaseException:
        # Cancelled (a time bound, a client gone) mid-statement: the socket may hold half an
        # answer. SQLAlchemy invalidates on such exit exceptions itself; this makes sure.
        if not connection.invalidated:
            connection.invalidate()
        raise
    _close_or_invalidate(connection)
    return result


def _close_or_invalidate(connection: Connection) -> None:
    try:
        connection.close()
    except BaseException:  # cancelled or failed in a snapshot's ROLLBACK
        if not (connection.closed or connection.invalidated):
            connection.invalidate()
        raise


async def _release(session: AsyncSession) -> None:
    """Close `session` (its connections are rolled back and go back to the pool) within
    `CLEANUP_SECONDS`; a server that hangs in that rollback gets them discarded instead."""
    try:
        async with asyncio.timeout(CLEANUP_SECONDS):
            await session.close()
    except TimeoutError:
        await _discard(session)


async def _discard(session: AsyncSession) -> None:
    """Close the connections of `session` at the socket, without a round trip, and drop them
    from the pool (SQLAlchemy's invalidate)."""
    with contextlib.suppress(Exception):
        async with asyncio.timeout(CLEANUP_SECONDS):
            await session.invalidate()


def alembic_config(database_url: str) -> AlembicConfig:
    """An Alembic `Config` for this project's migrations against `database_url`."""
    from alembic.config import Config

    config = Config(str(resource_path("alembic.ini")))
    config.set_main_option("script_location", str(resource_path("alembic")))
    config.attributes["database_url"] = database_url
    return config


@dataclass(frozen=True)
class MigrationOutcome:
    """The schema revision before and after a migration command (None: no schema)."""

    before: str | None
    after: str | None

    def describe(self) -> str:
        """One line for people, e.g. `database migrated from (empty) to 0005`."""
        if self.before == self.after:
            return f"database already at {self.after or '(empty)'}; nothing to do"
        return f"database migrated from {self.before or '(empty)'} to {self.after or '(empty)'}"


def _migrate(settings: Settings, direction: str, target: str) -> MigrationOutcome:
    from alembic import command

    config = alembic_config(settings.database_url)
    getattr(command, direction)(config, target)
    # alembic/env.py records what it found and left (a lock can make another process do it).
    before, after = config.attributes.get("revisions", (None, None))
    return MigrationOutcome(before=before, after=after)


def upgrade_to_head(settings: Settings) -> MigrationOutcome:
    """Apply every Alembic migration (`alembic upgrade head`). Synchronous: call it outside a
    running event loop (the CLI, a test fixture)."""
    sqlite_path = settings.sqlite_path
    if sqlite_path is not None:
        sqlite_path.parent.mkdir(parents=True, exist_ok=True)
    return _migrate(settings, "upgrade", "head")


def downgrade_to_base(settings: Settings) -> MigrationOutcome:
    """Revert every migration (`alembic downgrade base`): drops all tables and their data."""
    return _migrate(settings, "downgrade", "base")


def describe_database_error(error: BaseException) -> str:
    """The error's type and the driver's own message, one line, at most 200 characters (no SQL:
    SQLAlchemy's own text repeats the statement and its parameters)."""
    origin = getattr(error, "orig", None) or error.__cause__ or error
    text = " ".join(str(origin).split())[:200]
    return f"{type(error).__name__}: {text}" if origin is not error else type(error).__name__


# MySQL client errors that mean the server could not be reached or went away (CR_* codes).
UNREACHABLE_SERVER_CODES = frozenset({2002, 2003, 2006, 2013})


def _is_unreachable(error: DBAPIError) -> bool:
    """Whether `error` is a server out of reach, not a refusal (access, unknown database)."""
    origin = error.orig
    if isinstance(origin, (OSError, TimeoutError)):
        return True
    code = origin.args[0] if origin is not None and origin.args else None
    return code in UNREACHABLE_SERVER_CODES
