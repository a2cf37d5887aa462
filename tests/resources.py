"""The shared servers' resources one test run uses, named so that runs never clash.

Two `make test` runs on one machine share MariaDB and Redis, and each runs its tests in several
pytest-xdist workers. Each worker is a run with an id; its MySQL databases are
`qf_<purpose>_<run id>` and it claims one Redis database (1-6, 8-15) for itself, with
a claim key in database 0 that expires unless renewed. At the end the run drops its databases,
empties its Redis database and releases the claim; at the start it drops databases left by runs
whose claim has expired (a killed run). `TEST_MYSQL_URL` (a server URL; its database part is
ignored) and `TEST_REDIS_URL` (used as given, not claimed) point the tests elsewhere.
"""

from __future__ import annotations

import os
import re
import secrets

from redis import Redis
from sqlalchemy.engine import make_url

# Each pytest-xdist worker is a run of its own (its databases, its Redis database, its claim),
# so workers never clash; without xdist, a run id given by the caller is kept.
if os.environ.get("PYTEST_XDIST_WORKER"):
    RUN_ID = secrets.token_hex(4)
else:
    RUN_ID = os.environ.get("QF_TEST_RUN_ID") or secrets.token_hex(4)
os.environ["QF_TEST_RUN_ID"] = RUN_ID  # processes the tests spawn belong to this run
MYSQL_SERVER = make_url(os.environ.get("TEST_MYSQL_URL", "mysql+aiomysql://root@127.0.0.1:3306"))
REDIS_SERVER = "redis://127.0.0.1:6379"
# Database 0 holds the claims and 7 is the benchmark's default (`python -m bench`).
CLAIMABLE_REDIS_DATABASES = [*range(1, 7), *range(8, 16)]
CLAIM_SECONDS = 3600  # longer than any run; renewed at every claim check
RUN_PREFIX = "qf-test-run:"
CLAIM_PREFIX = "qf-test-redis-db:"
DATABASE_PREFIX = "qf_"


class ResourceError(RuntimeError):
    """A shared server is unreachable or has nothing free."""


def mysql_database_url(purpose: str) -> str:
    """The URL of this run's MySQL database for `purpose` (e.g. "test", "e2e")."""
    return MYSQL_SERVER.set(database=f"{DATABASE_PREFIX}{purpose}_{RUN_ID}").render_as_string(
        hide_password=False
    )


def _claims() -> Redis:
    return Redis.from_url(f"{REDIS_SERVER}/0", socket_connect_timeout=3, decode_responses=True)


def mark_alive() -> None:
    """Say that this run is alive (its databases are not a dead run's to drop)."""
    client = _claims()
    try:
        client.set(f"{RUN_PREFIX}{RUN_ID}", "1", ex=CLAIM_SECONDS)
    except Exception as error:
        raise ResourceError(f"Redis is required at {REDIS_SERVER} ({error})") from error
    finally:
        client.close()


def claim_redis_url() -> str:
    """A Redis database URL that no other live run uses."""
    if os.environ.get("TEST_REDIS_URL"):
        return os.environ["TEST_REDIS_URL"]
    client = _claims()
    try:
        client.set(f"{RUN_PREFIX}{RUN_ID}", "1", ex=CLAIM_SECONDS)
        for number in CLAIMABLE_REDIS_DATABASES:
            key = f"{CLAIM_PREFIX}{number}"
            if client.set(key, RUN_ID, nx=True, ex=CLAIM_SECONDS) or client.get(key) == RUN_ID:
                return f"{REDIS_SERVER}/{number}"
    except Exception as error:
        raise ResourceError(f"Redis is required at {REDIS_SERVER} ({error})") from error
    finally:
        client.close()
    raise ResourceError("every claimable Redis database is claimed by another test run")


def live_run_ids() -> set[str]:
    client = _claims()
    try:
        return {key.removeprefix(RUN_PREFIX) for key in client.scan_iter(f"{RUN_PREFIX}*")}
    finally:
        client.close()


def release(redis_url: str | None) -> None:
    """Empty this run's Redis database (if it claimed one) and give it back; the run is over."""
    client = _claims()
    try:
        if redis_url is not None and not os.environ.get("TEST_REDIS_URL"):
            number = redis_url.rsplit("/", 1)[1]
            Redis.from_url(redis_url).flushdb()
            if client.get(f"{CLAIM_PREFIX}{number}") == RUN_ID:
                client.delete(f"{CLAIM_PREFIX}{number}")
        client.delete(f"{RUN_PREFIX}{RUN_ID}")
    finally:
        client.close()


def databases_to_drop(existing: list[str], *, live: set[str], at_end: bool) -> list[str]:
    """Of `existing` database names, this run's own (at the end), or those of runs no longer
    alive (at the start)."""
    chosen = []
    for name in existing:
        if not name.startswith(DATABASE_PREFIX) or "_" not in name[len(DATABASE_PREFIX) :]:
            continue
        run = name.rsplit("_", 1)[1]
        if not re.fullmatch(r"[0-9a-f]{8}", run):
            continue  # not a run's database
        if (at_end and run == RUN_ID) or (not at_end and run not in live and run != RUN_ID):
            chosen.append(name)
    return chosen


async def drop_databases(*, at_end: bool) -> list[str]:
    """Drop this run's databases (`at_end`), or those of dead runs; returns their names."""
    from sqlalchemy import text
    from sqlalchemy.ext.asyncio import create_async_engine

    live = live_run_ids()
    engine = create_async_engine(MYSQL_SERVER.set(database=""), connect_args={"connect_timeout": 5})
    try:
        async with engine.begin() as connection:
            rows = await connection.execute(text("SHOW DATABASES LIKE 'qf\\_%'"))
            names = databases_to_drop([row[0] for row in rows], live=live, at_end=at_end)
            for name in names:
                await connection.execute(text(f"DROP DATABASE IF EXISTS `{name}`"))
    finally:
        await engine.dispose()
    return names
