"""Shared fixtures: settings per database backend, a served app, its client, a clean database.

Route tests run against both the real MariaDB/MySQL (this run's `qf_test_<run id>` on
`TEST_MYSQL_URL`, default `mysql+aiomysql://root@127.0.0.1:3306`, see tests/resources.py) and a
SQLite file. A missing MariaDB is an
error, never a skip.
"""

from __future__ import annotations

import asyncio
import functools
import shutil
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
from quart import Quart
from sqlalchemy import event, text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import create_async_engine

from app.db import upgrade_to_head
from app.factory import create_app
from app.models import Base
from app.settings import Settings
from app.state import app_state
from tests.resources import (
    ResourceError,
    claim_redis_url,
    drop_databases,
    mark_alive,
    mysql_database_url,
    release,
)
from tests.scheduling import LONG_MARKER, order_for_workers

pytest_plugins = ["pytester", "tests.report_guard"]

# A developer's .env (written by `make run`) must not change what the tests configure.
Settings.model_config["env_file"] = None

# This run's own MySQL database and Redis database (tests/resources.py: runs never clash).
MYSQL_URL = mysql_database_url("test")
try:
    mark_alive()
except ResourceError as error:
    pytest.exit(f"{error}; start it (see README)", returncode=3)


@functools.cache
def run_redis_url() -> str:
    """This run's Redis database, claimed on first use (so pytest-xdist's controller, which
    runs no test, claims none); flushed before each test that uses it."""
    try:
        return claim_redis_url()
    except ResourceError as error:
        pytest.exit(f"{error}; start it (see README)", returncode=3)


def __getattr__(name: str) -> str:
    # `from tests.conftest import REDIS_URL`: claimed when a test module first asks for it.
    if name == "REDIS_URL":
        return run_redis_url()
    raise AttributeError(name)


TEST_SECRET_KEY = "test-secret-key-not-for-production"
BACKENDS = ("sqlite", "mysql")


@pytest.hookimpl(trylast=True)
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Under pytest-xdist, the modules with a test marked `long(seconds)` go first, one slice
    each (tests/scheduling.py); every worker computes the same order."""
    worker_input = getattr(config, "workerinput", None)
    if worker_input is None:
        return

    def long_seconds(item: pytest.Item) -> float:
        marker = item.get_closest_marker(LONG_MARKER)
        return float(marker.args[0]) if marker is not None else 0.0

    items[:] = order_for_workers(
        items,
        int(worker_input["workercount"]),
        lambda item: item.nodeid.split("::")[0],
        long_seconds,
    )


@pytest.fixture(scope="session", autouse=True)
def clean_shared_servers() -> Iterator[None]:
    """Drop the databases of test runs that died; at the end, this run's own databases and
    Redis data (a missing MariaDB fails here, once, with a clear message)."""
    try:
        asyncio.run(drop_databases(at_end=False))
    except Exception as error:
        pytest.fail(f"MariaDB/MySQL is required ({type(error).__name__}: {error})", pytrace=False)
    yield
    asyncio.run(drop_databases(at_end=True))
    release(run_redis_url() if run_redis_url.cache_info().currsize else None)


# The tests' own job functions (tests/scheduler/jobs.py) are in a job module, as a deployment's
# are (SCHEDULER_JOB_MODULES).
TEST_JOB_MODULES = ["tests.scheduler.jobs"]


def make_settings(database_url: str, **overrides) -> Settings:
    overrides.setdefault("scheduler_job_modules", TEST_JOB_MODULES)
    return Settings(
        app_env="testing", secret_key=TEST_SECRET_KEY, database_url=database_url, **overrides
    )


async def _recreate_mysql_database(url: str) -> None:
    parsed = make_url(url)
    server = create_async_engine(parsed.set(database=""), connect_args={"connect_timeout": 5})
    try:
        async with server.begin() as connection:
            await connection.execute(text(f"DROP DATABASE IF EXISTS `{parsed.database}`"))
            await connection.execute(
                text(f"CREATE DATABASE `{parsed.database}` CHARACTER SET utf8mb4")
            )
    except Exception as error:
        pytest.fail(
            f"MariaDB/MySQL is required at {parsed.render_as_string()} and is not reachable "
            f"({type(error).__name__}: {error}). Start it (see README) or set TEST_MYSQL_URL.",
            pytrace=False,
        )
    finally:
        await server.dispose()


@pytest.fixture(scope="session")
def mysql_url() -> str:
    """A freshly created MySQL test database, migrated to head once per test session."""
    asyncio.run(_recreate_mysql_database(MYSQL_URL))
    upgrade_to_head(make_settings(MYSQL_URL))
    return MYSQL_URL


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A SQLite file migrated to head once; each test gets a copy."""
    path = tmp_path_factory.mktemp("sqlite-template") / "template.db"
    upgrade_to_head(make_settings(f"sqlite+aiosqlite:///{path}"))
    return path


async def _empty_all_tables(url: str) -> None:
    engine = create_async_engine(url)
    try:
        async with engine.begin() as connection:
            for table in reversed(Base.metadata.sorted_tables):
                await connection.execute(table.delete())
    finally:
        await engine.dispose()


@pytest.fixture(params=BACKENDS)
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """The database of one test: a migrated SQLite copy, or the emptied MySQL test database."""
    if request.param == "sqlite":
        path = tmp_path / "app.db"
        shutil.copyfile(request.getfixturevalue("sqlite_template"), path)
        return f"sqlite+aiosqlite:///{path}"
    url = request.getfixturevalue("mysql_url")
    asyncio.run(_empty_all_tables(url))
    return url


@pytest.fixture
def settings(database_url: str) -> Settings:
    """The original's open API (`API_AUTH=open`): the contract's route tests need no login.
    Authentication and permissions are tested in tests/auth with `API_AUTH=required`."""
    return make_settings(database_url, api_auth="open")


@pytest.fixture
def redis_url() -> str:
    """The tests' Redis database, emptied first. A Redis that does not answer fails the test."""
    from redis import Redis

    url = run_redis_url()
    client = Redis.from_url(url, socket_connect_timeout=3)
    try:
        client.flushdb()
    except Exception as error:
        pytest.fail(f"Redis is required at {url} and is not reachable ({error}).", pytrace=False)
    finally:
        client.close()
    return url


@pytest.fixture
async def app(settings: Settings) -> AsyncIterator[Quart]:
    """A served app (before_serving has run) over an empty database."""
    app = create_app(settings)
    async with app.test_app():
        yield app


@pytest.fixture
def serve_app(database_url: str):
    """`async with serve_app(**settings) as app`: more served apps over this test's database,
    e.g. two "workers" sharing it, or one with other settings. Auth is required by default."""

    @asynccontextmanager
    async def serve(**overrides) -> AsyncIterator[Quart]:
        app = create_app(make_settings(database_url, **overrides))
        async with app.test_app():
            yield app

    return serve


@pytest.fixture
def client(app: Quart):
    return app.test_client()


class QueryCounter:
    """Counts the SQL statements an engine executes while enabled."""

    def __init__(self) -> None:
        self.count = 0
        self.statements: list[str] = []

    def __call__(self, _conn, _cursor, statement, *_args) -> None:
        self.count += 1
        self.statements.append(statement)

    def reset(self) -> None:
        self.count = 0
        self.statements.clear()


@pytest.fixture
def query_counter(app: Quart) -> Iterator[QueryCounter]:
    counter = QueryCounter()
    sync_engine = app_state(app).database.engine.sync_engine
    event.listen(sync_engine, "before_cursor_execute", counter)
    yield counter
    event.remove(sync_engine, "before_cursor_execute", counter)


@pytest.fixture
def query_counter_of() -> Iterator[Callable[[Quart], QueryCounter]]:
    """`query_counter_of(app)`: a `QueryCounter` on that app's engine, from now on."""
    listening: list[tuple[object, QueryCounter]] = []

    def count(app: Quart) -> QueryCounter:
        counter = QueryCounter()
        sync_engine = app_state(app).database.engine.sync_engine
        event.listen(sync_engine, "before_cursor_execute", counter)
        listening.append((sync_engine, counter))
        return counter

    yield count
    for sync_engine, counter in listening:
        event.remove(sync_engine, "before_cursor_execute", counter)


@pytest.fixture(scope="session")
def redis_cluster_nodes(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """`REDIS_CLUSTER_NODES` of a Redis Cluster of this test process's own (3 masters on free
    ports, tests/e2e/dependencies.py), for the tests parametrised over Redis topologies."""
    from tests.e2e.dependencies import own_redis_cluster

    with own_redis_cluster(tmp_path_factory.mktemp("redis-cluster")) as cluster:
        yield cluster.node_addresses


async def open_cluster_client(redis_cluster_nodes: str) -> Any:
    """The service's own cluster client (app.redis_client), every primary emptied first."""
    from redis.asyncio.cluster import RedisCluster

    from app.redis_client import create_cluster_client

    settings = make_settings("sqlite://", redis_cluster_nodes=redis_cluster_nodes)
    client = create_cluster_client(settings)
    await client.flushall(target_nodes=RedisCluster.PRIMARIES)
    return client
