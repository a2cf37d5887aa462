"""The worker's lifespan (app/lifespan.py): a startup that fails at any step closes exactly what
it had opened. Real MariaDB and Redis: after the failure, the state holds nothing, no task of
the app runs, and neither server sees a connection of the app any more."""

from __future__ import annotations

import asyncio

import pytest
from redis.asyncio import Redis
from sqlalchemy import make_url, text
from sqlalchemy.ext.asyncio import create_async_engine

from app.factory import create_app
from app.state import app_state
from tests.conftest import make_settings

pytestmark = pytest.mark.parametrize("database_url", ["mysql"], indirect=True)

RESOURCES = (
    "database",
    "redis",
    "presence",
    "credential_guard",
    "credential_cache",
    "verified_passwords",
    "hub",
    "memory_monitor",
    "ws_read_rules",
    "scheduler",
    "loop_lag",
)


class InjectedFailure(Exception):
    pass


def fail(*_args, **_options):
    raise InjectedFailure


# Each step of app.lifespan.serving, failing in turn (the step's own code raising). The last
# fails for real: a configured job whose function may not be scheduled, found by the started
# scheduler.
STEPS = {
    "database connect": ("app.db.Database.connect", None),
    "presence (after redis)": ("app.lifespan.create_presence_store", None),
    "credential cache": ("app.lifespan.watch_credential_changes", None),
    "realtime (after the hub started)": ("app.ws.setup.ReadRules", None),
    "loop lag probe": ("app.lifespan.LoopLagProbe.start", None),
    "scheduler": (
        None,
        {
            "scheduler_enabled": True,
            "scheduler_jobs": [{"id": "x", "func": "os:system", "trigger": "interval", "hours": 1}],
        },
    ),
}


async def open_connections(database_url: str, redis_url: str) -> tuple[int, int]:
    """(MariaDB connections to the test's database, Redis clients on the test's database),
    not counting the probe's own."""
    url = make_url(database_url)
    engine = create_async_engine(url.set(database="information_schema"))
    try:
        async with engine.connect() as connection:
            mysql = await connection.scalar(
                text("SELECT COUNT(*) FROM PROCESSLIST WHERE DB = :db AND ID != CONNECTION_ID()"),
                {"db": url.database},
            )
    finally:
        await engine.dispose()
    client = Redis.from_url(redis_url)
    try:
        database = client.connection_pool.connection_kwargs.get("db", 0)
        me = await client.client_id()
        clients = [
            entry
            for entry in await client.client_list()
            if int(entry["db"]) == database and int(entry["id"]) != me
        ]
    finally:
        await client.aclose()
    return int(mysql or 0), len(clients)


@pytest.mark.parametrize("step", list(STEPS))
async def test_a_startup_failing_at_any_step_leaves_nothing_open(
    step, database_url, redis_url, monkeypatch
) -> None:
    target, overrides = STEPS[step]
    if target is not None:
        monkeypatch.setattr(target, fail)
    settings = make_settings(
        database_url,
        redis_url=redis_url,
        scheduler_builtin_jobs=False,
        **(overrides or {}),
    )
    before = await open_connections(database_url, redis_url)
    tasks_before = asyncio.all_tasks()
    app = create_app(settings)
    with pytest.raises((InjectedFailure, ValueError)) as failure:
        await app.startup()
    if target is None:
        assert "SCHEDULER_JOBS: job 'x'" in str(failure.value)
    state = app_state(app)
    assert {name: getattr(state, name) for name in RESOURCES} == dict.fromkeys(RESOURCES)
    assert state.drain_hooks == []

    async def settled() -> bool:  # a cancelled task finishes at its next turn
        return not [task for task in asyncio.all_tasks() - tasks_before if not task.done()]

    from tests.waiting import eventually

    await eventually(settled, timeout=5)
    # Nothing this startup opened is left (a connection of the suite that was closing when
    # `before` was counted may be gone by now: fewer is fine).
    after = await open_connections(database_url, redis_url)
    assert after[0] <= before[0] and after[1] <= before[1], (before, after)
