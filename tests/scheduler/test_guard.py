"""app.scheduler.guard without HTTP: which triggers and stored jobs may run, and the refused
jobs' record in memory and in Redis."""

from __future__ import annotations

from datetime import UTC

import pytest
from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.triggers.cron import CronTrigger
from apscheduler.triggers.date import DateTrigger
from apscheduler.triggers.interval import IntervalTrigger

from app.redis_client import create_redis
from app.scheduler.guard import RefusedJobs, trigger_violation, violation
from tests.conftest import make_settings

FUNC = "app.scheduler.jobs:print_test"


@pytest.mark.parametrize(
    ("trigger", "min_interval", "reason"),
    [
        (IntervalTrigger(seconds=5), 1, None),
        (IntervalTrigger(seconds=0.5), 1, "interval: 0.5 s is shorter than"),
        (IntervalTrigger(weeks=600), 1, "interval: must be at most ten years"),
        (IntervalTrigger(seconds=5, jitter=90_000), 1, "jitter: must be at most 86400"),
        (CronTrigger(second="*/10", timezone=UTC), 30, "cron: fires 10 s apart"),
        (CronTrigger(minute="*", timezone=UTC), 30, None),
        (CronTrigger(second="*", timezone=UTC), 1, None),  # cron's own step is 1 s
        (DateTrigger("2030-01-01T00:00:00+00:00"), 60, None),
    ],
)
def test_trigger_violation(trigger, min_interval, reason) -> None:
    found = trigger_violation(trigger, min_interval)
    if reason is None:
        assert found is None
    else:
        assert found is not None and found.startswith(reason)


def test_a_stored_job_with_an_unsafe_id_is_refused() -> None:
    scheduler = BackgroundScheduler(timezone=UTC)
    safe = scheduler.add_job(FUNC, "interval", seconds=5, id="safe")
    unsafe = scheduler.add_job(FUNC, "interval", seconds=5, id="../up")
    assert violation(safe, 1) is None
    assert (violation(unsafe, 1) or "").startswith("id: must be 1 to 64 letters")
    assert (violation(safe, 10) or "").startswith("interval: 5 s is shorter")


async def check_refused_jobs(refused: RefusedJobs) -> None:
    assert await refused.all() == {}
    await refused.mark("a", "interval: too short")
    await refused.mark("b", "id: bad")
    assert await refused.all() == {"a": "interval: too short", "b": "id: bad"}
    await refused.clear("a")
    await refused.clear("never-marked")
    assert await refused.all() == {"b": "id: bad"}


async def test_refused_jobs_in_memory() -> None:
    await check_refused_jobs(RefusedJobs(None, "unused"))


async def test_refused_jobs_in_redis_are_shared(redis_url) -> None:
    settings = make_settings("sqlite+aiosqlite://", redis_url=redis_url)
    redis = create_redis(settings)
    assert redis is not None
    try:
        await check_refused_jobs(RefusedJobs(redis, "test:scheduler:refused"))
        other_worker = RefusedJobs(redis, "test:scheduler:refused")
        assert await other_worker.all() == {"b": "id: bad"}
    finally:
        await redis.aclose()
