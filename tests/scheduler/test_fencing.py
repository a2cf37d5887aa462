"""Fencing (app.scheduler.fencing): two workers that both lead at once (as after a Redis
failover that lost the lease) still run each scheduled tick once, on the real MariaDB."""

from __future__ import annotations

import asyncio
from collections import Counter
from datetime import UTC, datetime, timedelta

import pytest

from app import state
from app.models import ScheduledRun
from app.scheduler.fencing import KEEP_SECONDS, RunClaims
from tests.auth_helpers import make_user
from tests.conftest import _empty_all_tables
from tests.scheduler.conftest import ADMIN
from tests.waiting import eventually


@pytest.fixture
def database_url(mysql_url: str) -> str:
    asyncio.run(_empty_all_tables(mysql_url))
    return mysql_url


async def test_a_run_is_claimed_once(serve_app) -> None:
    async with serve_app() as app:
        async with app.app_context():
            database = state.database()
        first, second = RunClaims(database, "a:1"), RunClaims(database, "b:2")
        # A recent run time: claims older than KEEP_SECONDS are purged by the next claim (a
        # fixed date here made the second claim purge the first once that date was a day old).
        run_time = datetime.now(UTC).replace(microsecond=123456)
        outcomes = await asyncio.gather(
            first.claim("tick", run_time), second.claim("tick", run_time)
        )
        assert sorted(outcomes) == [False, True]
        assert await first.claim("tick", run_time + timedelta(seconds=1))
        assert await second.claim("other", run_time)
        async with database.session() as session:
            kept = await session.get(ScheduledRun, ("tick", run_time))
        assert kept is not None and kept.worker in {"a:1", "b:2"}


async def test_claims_older_than_a_day_are_purged_by_a_worker_s_first_claim(serve_app) -> None:
    async with serve_app() as app:
        async with app.app_context():
            database = state.database()
        now = datetime.now(UTC).replace(microsecond=0)
        stale, recent = now - timedelta(seconds=KEEP_SECONDS + 60), now - timedelta(hours=1)
        async with database.session() as session:
            session.add_all(
                [
                    ScheduledRun(job_id="tick", run_time=stale, worker="old:1"),
                    ScheduledRun(job_id="tick", run_time=recent, worker="old:1"),
                ]
            )
            await session.commit()
        assert await RunClaims(database, "a:1").claim("tick", now)
        async with database.session() as session:
            assert await session.get(ScheduledRun, ("tick", stale)) is None
            assert await session.get(ScheduledRun, ("tick", recent)) is not None


@pytest.mark.parametrize(
    ("executor", "func"),
    [("default", "note_tick"), ("threadpool", "note_tick_in_a_thread")],
)
async def test_two_leaders_at_once_run_each_tick_once(serve_app, executor, func) -> None:
    """Two apps without Redis both lead (each its own scheduler and job store); the same
    interval job in both has the same run times. Each tick succeeds in one app and is skipped
    as fenced in the other, on either executor (the thread pool's runs are claimed too)."""
    from tests.scheduler.jobs import TICKS_RUN

    TICKS_RUN.clear()
    start = (datetime.now(UTC) + timedelta(seconds=1)).replace(microsecond=0)
    async with (
        serve_app(
            scheduler_enabled=True, scheduler_builtin_jobs=False, redis_key_prefix="a:"
        ) as one,
        serve_app(
            scheduler_enabled=True, scheduler_builtin_jobs=False, redis_key_prefix="b:"
        ) as two,
    ):
        await make_user(one, "root", role=1)
        for app in (one, two):
            response = await app.test_client().post(
                "/scheduler/jobs",
                json={
                    "id": "fenced",
                    "func": f"tests.scheduler.jobs:{func}",
                    "executor": executor,
                    "trigger": "interval",
                    "seconds": 1,
                    "start_date": start.isoformat(),
                },
                headers=ADMIN,
            )
            assert response.status_code == 200, await response.get_json()

        async def runs_of(app) -> list[dict]:
            response = await app.test_client().get("/scheduler/jobs/fenced/runs", headers=ADMIN)
            return await response.get_json()

        async def four_ticks_decided() -> bool:
            outcomes = Counter()
            for app in (one, two):
                for run in await runs_of(app):
                    outcomes[(run["scheduled_time"], run["outcome"])] += 1
            decided = {when for (when, outcome) in outcomes if outcome == "success"}
            fenced = {when for (when, outcome) in outcomes if outcome == "skipped"}
            return len(decided & fenced) >= 4

        await eventually(four_ticks_decided, timeout=20)
        runs = [run for app in (one, two) for run in await runs_of(app)]
    successes = Counter(
        datetime.fromisoformat(r["scheduled_time"]) for r in runs if r["outcome"] == "success"
    )
    assert max(successes.values()) == 1, successes
    skipped = [r for r in runs if r["outcome"] == "skipped"]
    assert skipped and all(r["error"].startswith("RunFenced: claimed by") for r in skipped)
    assert TICKS_RUN  # the job itself ran
