"""Two workers sharing Redis: one leader, one job store, one state, one run per tick."""

from __future__ import annotations

import socket

import pytest
from apscheduler.schedulers.base import STATE_PAUSED

from app.state import app_state
from tests.auth_helpers import make_user
from tests.scheduler.conftest import ADMIN
from tests.waiting import eventually

PRINT_TEST = "app.scheduler.jobs:print_test"


@pytest.fixture
def shared(serve_app, redis_url):
    def worker():
        return serve_app(
            scheduler_enabled=True,
            scheduler_builtin_jobs=False,
            redis_url=redis_url,
            scheduler_lease_seconds=2,
        )

    return worker


async def test_one_leader_one_store_one_state(shared) -> None:
    async with shared() as first, shared() as second:
        await make_user(first, "root", role=1)
        a, b = app_state(first).scheduler, app_state(second).scheduler

        async def one_leader() -> bool:
            return a.is_leader != b.is_leader

        await eventually(one_leader)
        leader, follower = (first, second) if a.is_leader else (second, first)

        # A job added through the follower is seen by the leader, and runs there, once a tick.
        # A 503 is the answer while a Redis call of this worker timed out (REDIS_TIMEOUT, 1 s:
        # seen at startup under a full suite's load) and its circuit is open; nothing is
        # stored then, so the client's retry is the right move.
        async def job_added() -> bool:
            response = await follower.test_client().post(
                "/scheduler/jobs",
                headers=ADMIN,
                json={"id": "tick", "func": PRINT_TEST, "trigger": "interval", "seconds": 1},
            )
            assert response.status_code in (200, 503), await response.get_data(as_text=True)
            return response.status_code == 200

        await eventually(job_added)
        seen = await (
            await leader.test_client().get("/scheduler/jobs/tick", headers=ADMIN)
        ).get_json()
        assert seen["id"] == "tick"

        async def runs_seen_by_follower() -> list[dict]:
            response = await follower.test_client().get("/scheduler/jobs/tick/runs", headers=ADMIN)
            return await response.get_json()

        async def two_runs() -> bool:
            return len(await runs_seen_by_follower()) >= 2

        await eventually(two_runs)
        runs = await runs_seen_by_follower()
        scheduled = [run["scheduled_time"] for run in runs]
        assert len(scheduled) >= 2 and len(set(scheduled)) == len(scheduled)
        assert {run["worker"] for run in runs} == {app_state(leader).scheduler.leadership.identity}

        # Pausing through one worker pauses processing everywhere.
        assert (
            await follower.test_client().post("/scheduler/pause", headers=ADMIN)
        ).status_code == 204
        info = await (await leader.test_client().get("/scheduler", headers=ADMIN)).get_json()
        assert info["state"] == "paused"
        service = app_state(leader).scheduler

        async def scheduler_paused() -> bool:
            return service.scheduler.state == STATE_PAUSED

        await eventually(scheduler_paused)  # the leader's next tick applied the shared state
        before = len(await service.history.runs("tick"))
        ticks = service.leader.ticks

        async def three_more_ticks() -> bool:  # a 1 s job would have run at least twice
            return service.leader.ticks >= ticks + 3

        await eventually(three_more_ticks)
        assert len(await service.history.runs("tick")) == before
        await leader.test_client().post("/scheduler/resume", headers=ADMIN)


async def test_follower_takes_over_when_the_leader_stops(shared) -> None:
    async with shared() as survivor:
        async with shared() as departing:
            await eventually(lambda: _any_leader(survivor, departing))
        # The departing worker released its lease (or it expires): the survivor leads.
        await eventually(lambda: _leads(survivor), timeout=20)  # lease 2 s; a loaded CI machine


async def _any_leader(*apps) -> bool:
    return any(app_state(app).scheduler.is_leader for app in apps)


async def _leads(app) -> bool:
    return app_state(app).scheduler.is_leader


async def test_sqlalchemy_job_store_on_a_synchronous_driver(serve_app, mysql_url) -> None:
    sync_url = mysql_url.replace("+aiomysql", "+pymysql")
    async with serve_app(
        scheduler_enabled=True,
        scheduler_builtin_jobs=False,
        scheduler_jobstore="sqlalchemy",
        scheduler_sqlalchemy_url=sync_url,
    ) as app:
        await make_user(app, "root", role=1)
        client = app.test_client()
        await client.delete("/scheduler/jobs/stored", headers=ADMIN)  # from an earlier run
        response = await client.post(
            "/scheduler/jobs",
            headers=ADMIN,
            json={"id": "stored", "func": PRINT_TEST, "trigger": "interval", "minutes": 5},
        )
        assert response.status_code == 200
    # A new worker finds the job in the table.
    async with serve_app(
        scheduler_enabled=True,
        scheduler_builtin_jobs=False,
        scheduler_jobstore="sqlalchemy",
        scheduler_sqlalchemy_url=sync_url,
    ) as app:
        job = await (
            await app.test_client().get("/scheduler/jobs/stored", headers=ADMIN)
        ).get_json()
        assert job["minutes"] == 5
        await app.test_client().delete("/scheduler/jobs/stored", headers=ADMIN)


async def test_hosts_not_allowed_never_lead(shared, serve_app, redis_url) -> None:
    async with serve_app(
        scheduler_enabled=True,
        scheduler_builtin_jobs=False,
        redis_url=redis_url,
        scheduler_allowed_hosts=["some-other-host"],
    ) as app:
        service = app_state(app).scheduler

        async def ticked_twice() -> bool:
            return service.leader.ticks >= 2

        await eventually(ticked_twice)  # its loop ran, with the lease free to take...
        assert service.leader.attempts == 0  # ...and it never tried
        assert service.is_leader is False
        assert (await service.info())["leader"] is None

        # The same worker on an allowed host (this one) takes the free lease.
        async with serve_app(
            scheduler_enabled=True,
            scheduler_builtin_jobs=False,
            redis_url=redis_url,
            scheduler_allowed_hosts=[socket.gethostname()],
        ) as allowed:
            await eventually(lambda: _leads(allowed))
        assert service.is_leader is False
