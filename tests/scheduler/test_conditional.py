"""ETags and conditional requests on the scheduler's jobs (issue 33; RFC 9110 §13), on each job
store: the ETag is the store's version of the job, raised by every write of it."""

from __future__ import annotations

import asyncio
import uuid

import pytest

from app.state import app_state
from tests.auth_helpers import make_user
from tests.scheduler.conftest import ADMIN
from tests.waiting import eventually

PRINT_TEST = "app.scheduler.jobs:print_test"
STORES = ["memory", "redis", "sqlalchemy-sqlite", "sqlalchemy-mariadb"]


@pytest.fixture(params=STORES)
def store_settings(request) -> dict:
    store = request.param
    if store == "memory":
        return {"scheduler_jobstore": "memory"}
    if store == "redis":
        return {"scheduler_jobstore": "redis", "redis_url": request.getfixturevalue("redis_url")}
    if store == "sqlalchemy-sqlite":  # the service's own SQLite file, on the built-in driver
        return {"scheduler_jobstore": "sqlalchemy"}
    mysql_url = request.getfixturevalue("mysql_url")
    return {
        "scheduler_jobstore": "sqlalchemy",
        "scheduler_sqlalchemy_url": mysql_url.replace("+aiomysql", "+pymysql"),
    }


@pytest.fixture
def worker(serve_app, store_settings):
    def serve():
        return serve_app(scheduler_enabled=True, scheduler_builtin_jobs=False, **store_settings)

    return serve


def job_id() -> str:
    return f"job-{uuid.uuid4().hex[:12]}"


async def add_job(client, identifier: str, **fields):
    definition = {
        "id": identifier,
        "func": PRINT_TEST,
        "trigger": "interval",
        **(fields or {"minutes": 5}),
    }
    response = await client.post("/scheduler/jobs", json=definition, headers=ADMIN)
    assert response.status_code == 200, await response.get_data()
    return response


async def test_etag_304_and_a_new_etag_after_each_change(worker) -> None:
    async with worker() as app:
        await make_user(app, "root", role=1)
        client = app.test_client()
        identifier = job_id()
        added = await add_job(client, identifier)
        etag = added.headers["ETag"]
        assert etag.startswith('"') and etag.strip('"').isdecimal()

        read = await client.get(f"/scheduler/jobs/{identifier}", headers=ADMIN)
        assert read.status_code == 200 and read.headers["ETag"] == etag
        cached = await client.get(
            f"/scheduler/jobs/{identifier}", headers={**ADMIN, "If-None-Match": etag}
        )
        assert cached.status_code == 304 and cached.headers["ETag"] == etag
        assert await cached.get_data() == b""

        paused = await client.post(f"/scheduler/jobs/{identifier}/pause", headers=ADMIN)
        assert paused.status_code == 200 and paused.headers["ETag"] != etag
        stale = await client.get(
            f"/scheduler/jobs/{identifier}", headers={**ADMIN, "If-None-Match": etag}
        )
        assert stale.status_code == 200 and (await stale.get_json())["next_run_time"] is None
        assert stale.headers["ETag"] == paused.headers["ETag"]

        # Deleted and added again under its id: never an old version.
        assert (
            await client.delete(f"/scheduler/jobs/{identifier}", headers=ADMIN)
        ).status_code == 204
        again = await add_job(client, identifier)
        assert again.headers["ETag"] not in {etag, paused.headers["ETag"]}
        assert (
            await client.get(
                f"/scheduler/jobs/{identifier}",
                headers={**ADMIN, "If-None-Match": paused.headers["ETag"]},
            )
        ).status_code == 200
        await client.delete(f"/scheduler/jobs/{identifier}", headers=ADMIN)


async def test_stale_if_match_is_412_and_changes_nothing(worker) -> None:
    async with worker() as app:
        await make_user(app, "root", role=1)
        client = app.test_client()
        identifier = job_id()
        etag = (await add_job(client, identifier)).headers["ETag"]
        renamed = await client.patch(
            f"/scheduler/jobs/{identifier}",
            json={"name": "first"},
            headers={**ADMIN, "If-Match": etag},
        )
        assert renamed.status_code == 200 and renamed.headers["ETag"] != etag
        current = renamed.headers["ETag"]

        for method, body in (
            ("patch", {"name": "second", "trigger": "interval", "minutes": 1}),
            ("delete", None),
        ):
            response = await getattr(client, method)(
                f"/scheduler/jobs/{identifier}", json=body, headers={**ADMIN, "If-Match": etag}
            )
            assert response.status_code == 412, method
            assert "If-Match" in (await response.get_json())["error_message"]
        unchanged = await client.get(f"/scheduler/jobs/{identifier}", headers=ADMIN)
        job = await unchanged.get_json()
        assert unchanged.headers["ETag"] == current
        assert job["name"] == "first" and job["minutes"] == 5

        weak = await client.delete(
            f"/scheduler/jobs/{identifier}", headers={**ADMIN, "If-Match": f"W/{current}"}
        )
        assert weak.status_code == 412  # strong comparison (RFC 9110 §13.1.1)
        deleted = await client.delete(
            f"/scheduler/jobs/{identifier}", headers={**ADMIN, "If-Match": current}
        )
        assert deleted.status_code == 204
        gone = await client.get(f"/scheduler/jobs/{identifier}", headers=ADMIN)
        assert gone.status_code == 404


async def test_of_concurrent_writers_with_one_etag_exactly_one_wins(worker, store_settings) -> None:
    shared = store_settings["scheduler_jobstore"] != "memory"  # memory: one process only
    async with worker() as first, worker() as second:
        await make_user(first, "root", role=1)
        apps = [first, second] if shared else [first]
        identifier = job_id()
        etag = (await add_job(first.test_client(), identifier)).headers["ETag"]

        async def rename(index: int):
            client = apps[index % len(apps)].test_client()
            return await client.patch(
                f"/scheduler/jobs/{identifier}",
                json={"name": f"writer-{index}"},
                headers={**ADMIN, "If-Match": etag},
            )

        answers = await asyncio.gather(*(rename(index) for index in range(10)))
        statuses = sorted(answer.status_code for answer in answers)
        assert statuses == [200] + [412] * 9
        winner = next(answer for answer in answers if answer.status_code == 200)
        stored = await first.test_client().get(f"/scheduler/jobs/{identifier}", headers=ADMIN)
        assert (await stored.get_json())["name"] == (await winner.get_json())["name"]
        assert stored.headers["ETag"] == winner.headers["ETag"]
        await first.test_client().delete(f"/scheduler/jobs/{identifier}", headers=ADMIN)


async def test_a_run_of_the_job_changes_its_etag(worker) -> None:
    """The scheduler's own write (the next run time it shows) raises the version too."""
    async with worker() as app:
        await make_user(app, "root", role=1)
        client = app.test_client()
        identifier = job_id()
        added = await add_job(client, identifier, seconds=1)
        before = await added.get_json()

        async def ran() -> bool:
            response = await client.get(f"/scheduler/jobs/{identifier}", headers=ADMIN)
            return (await response.get_json())["next_run_time"] != before["next_run_time"]

        await eventually(ran, timeout=15)
        after = await client.get(
            f"/scheduler/jobs/{identifier}",
            headers={**ADMIN, "If-None-Match": added.headers["ETag"]},
        )
        assert after.status_code == 200 and after.headers["ETag"] != added.headers["ETag"]
        await client.delete(f"/scheduler/jobs/{identifier}", headers=ADMIN)


async def test_require_if_match_is_428_on_job_writes(serve_app) -> None:
    async with serve_app(
        scheduler_enabled=True, scheduler_builtin_jobs=False, require_if_match=True
    ) as app:
        await make_user(app, "root", role=1)
        client = app.test_client()
        identifier = job_id()
        etag = (await add_job(client, identifier)).headers["ETag"]
        response = await client.patch(
            f"/scheduler/jobs/{identifier}", json={"name": "x"}, headers=ADMIN
        )
        assert response.status_code == 428
        assert "If-Match" in (await response.get_json())["error_message"]
        assert (
            await client.delete(
                f"/scheduler/jobs/{identifier}", headers={**ADMIN, "If-Match": etag}
            )
        ).status_code == 204


async def test_a_job_stored_before_the_versions_table_is_at_version_0(serve_app) -> None:
    from sqlalchemy import delete

    async with serve_app(
        scheduler_enabled=True, scheduler_builtin_jobs=False, scheduler_jobstore="sqlalchemy"
    ) as app:
        await make_user(app, "root", role=1)
        client = app.test_client()
        identifier = job_id()
        await add_job(client, identifier)
        store = app_state(app).scheduler.store
        with store.engine.begin() as connection:
            connection.execute(delete(store.versions_t))
        legacy = await client.get(f"/scheduler/jobs/{identifier}", headers=ADMIN)
        assert legacy.status_code == 200 and legacy.headers["ETag"] == '"0"'
        renamed = await client.patch(
            f"/scheduler/jobs/{identifier}",
            json={"name": "x"},
            headers={**ADMIN, "If-Match": '"0"'},
        )
        assert renamed.status_code == 200 and renamed.headers["ETag"] == '"1"'


async def test_the_headers_are_documented(serve_app) -> None:
    async with serve_app(scheduler_enabled=True, scheduler_builtin_jobs=False) as app:
        spec = await (await app.test_client().get("/openapi.json")).get_json()
    job = next(path for name, path in spec["paths"].items() if name.endswith("/jobs/{job_id}"))
    names = {p["name"].lower() for p in job["get"].get("parameters", [])}
    assert "if-none-match" in names and "304" in job["get"]["responses"]
    for method in ("patch", "delete"):
        names = {p["name"].lower() for p in job[method].get("parameters", [])}
        assert "if-match" in names and {"412", "428"} <= set(job[method]["responses"])
