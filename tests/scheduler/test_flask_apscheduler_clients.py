"""The scheduler API as a Flask-APScheduler client calls it (issue 31): JSON bodies sent without
a Content-Type (as Flask's test client and many scripts send them), every route its API tests
exercise, `SCHEDULER_API_PREFIX`, the realm of the challenge, and the divergences this service
keeps on purpose (400 naming the field where upstream answers 500, the allow-list of job
functions, admins only). Written from upstream's documented behaviour, in process."""

from __future__ import annotations

import json

import pytest

from app.settings import Settings
from tests.auth_helpers import make_user
from tests.scheduler.conftest import ADMIN, USER

PRINT_TEST = "app.scheduler.jobs:print_test"
JOB = {"id": "job1", "func": PRINT_TEST, "trigger": "interval", "minutes": 10}


async def post(client, path: str, body: object | None = None, prefix: str = "/scheduler"):
    """A POST whose body is JSON text with no Content-Type, as Flask-APScheduler's clients."""
    data = json.dumps(body) if body is not None else None
    return await client.post(prefix + path, data=data, headers=ADMIN)


async def patch(client, path: str, body: object):
    return await client.patch("/scheduler" + path, data=json.dumps(body), headers=ADMIN)


async def test_jobs_added_and_patched_without_a_content_type(client) -> None:
    response = await post(client, "/jobs", JOB)
    assert response.status_code == 200, await response.get_data()
    added = await response.get_json()
    assert (added["id"], added["func"], added["trigger"], added["minutes"]) == (
        "job1", PRINT_TEST, "interval", 10
    )  # fmt: skip
    assert (await post(client, "/jobs", JOB)).status_code == 409
    response = await patch(client, "/jobs/job1", {"args": [1], "trigger": "cron", "minute": "*/1"})
    assert response.status_code == 200, await response.get_data()
    patched = await response.get_json()
    assert (patched["args"], patched["trigger"], patched["minute"]) == ([1], "cron", "*/1")


async def test_a_patch_of_a_missing_job_is_404_whatever_the_content_type(client) -> None:
    response = await patch(client, "/jobs/nothere", {"trigger": "cron", "minute": "*/1"})
    assert response.status_code == 404
    assert await response.get_json() == {"error_message": "Job nothere not found"}


async def test_every_job_route_upstream_tests(client) -> None:
    await post(client, "/jobs", JOB)
    got = await client.get("/scheduler/jobs/job1", headers=ADMIN)
    assert got.status_code == 200 and (await got.get_json())["minutes"] == 10
    listed = await (await client.get("/scheduler/jobs", headers=ADMIN)).get_json()
    assert [job["id"] for job in listed] == ["job1"]
    paused = await post(client, "/jobs/job1/pause")
    assert paused.status_code == 200 and (await paused.get_json())["next_run_time"] is None
    resumed = await post(client, "/jobs/job1/resume")
    assert resumed.status_code == 200 and (await resumed.get_json())["next_run_time"]
    ran = await post(client, "/jobs/job1/run")
    assert ran.status_code == 200 and (await ran.get_json())["next_run_time"]
    for action in ("pause", "resume", "run"):
        assert (await post(client, f"/jobs/missing/{action}")).status_code == 404
    assert (await client.delete("/scheduler/jobs/job1", headers=ADMIN)).status_code == 204
    assert (await client.get("/scheduler/jobs/job1", headers=ADMIN)).status_code == 404
    assert (await client.delete("/scheduler/jobs/job1", headers=ADMIN)).status_code == 404


async def test_scheduler_info_pause_resume_shutdown_start(client) -> None:
    info = await (await client.get("/scheduler", headers=ADMIN)).get_json()
    assert info["allowed_hosts"] == ["*"] and info["running"] is True and info["current_host"]
    for action in ("pause", "resume", "shutdown"):
        assert (await post(client, "/" + action)).status_code == 204
    assert (await client.get("/scheduler", headers=ADMIN)).status_code == 200
    assert (await post(client, "/shutdown")).status_code == 400  # already stopped
    assert (await post(client, "/start")).status_code == 204
    assert (await post(client, "/start")).status_code == 400  # already running


async def test_kept_divergences(client) -> None:
    """400 naming the field where upstream answers 500; an unlisted function is refused."""
    response = await post(client, "/jobs", {"id": None})
    assert response.status_code == 400
    assert (await response.get_json())["error_message"].startswith("func: ")  # names the field
    await post(client, "/jobs", JOB)
    response = await patch(client, "/jobs/job1", {"trigger": "invalid_trigger"})
    assert response.status_code == 400
    assert "trigger" in (await response.get_json())["error_message"]
    response = await post(client, "/jobs", {**JOB, "id": "evil", "func": "os:system"})
    assert response.status_code == 400
    assert "is not a registered job function" in (await response.get_json())["error_message"]
    response = await client.post("/scheduler/jobs", data="{not json", headers=ADMIN)
    assert response.status_code == 400
    assert "not valid JSON" in (await response.get_json())["error_message"]


async def test_admins_only_and_the_challenge(client) -> None:
    missing = await client.get("/scheduler")
    assert missing.status_code == 401
    assert missing.headers.get_all("WWW-Authenticate")[0].startswith(
        'Basic realm="quart-framework"'
    )
    assert (await client.get("/scheduler", headers=USER)).status_code == 403


@pytest.fixture
async def moved(serve_app):
    async with serve_app(
        scheduler_enabled=True,
        scheduler_builtin_jobs=False,
        scheduler_api_prefix="/api/jobs",
        auth_realm="Authentication Required",
    ) as app:
        await make_user(app, "root", role=1)
        yield app


async def test_the_api_prefix_moves_every_route_and_the_realm_is_set(moved) -> None:
    client = moved.test_client()
    assert (await client.get("/api/jobs/jobs", headers=ADMIN)).status_code == 200
    assert (await post(client, "/jobs", JOB, prefix="/api/jobs")).status_code == 200
    assert (await client.get("/scheduler/jobs", headers=ADMIN)).status_code == 404
    missing = await client.get("/api/jobs")
    assert missing.status_code == 401 and "error_message" in await missing.get_json()
    assert missing.headers.get_all("WWW-Authenticate")[0].startswith(
        'Basic realm="Authentication Required"'
    )


@pytest.mark.parametrize(
    ("prefix", "valid"),
    [("/api/jobs", True), ("/jobs/v2", True), ("/api/v1/jobs", False), ("jobs", False),
     ("/ws", False), ("/a b", False), ("/x/", False)],
)  # fmt: skip
def test_the_prefix_is_checked_at_start(prefix: str, valid: bool) -> None:
    from pydantic import ValidationError

    try:
        Settings(app_env="testing", secret_key="x" * 32, scheduler_api_prefix=prefix)
    except ValidationError:
        assert not valid
    else:
        assert valid
