"""Guard rails around APScheduler 3: which jobs may run, how much catching up one wake-up may
do, and no run while this worker's lease may have lapsed.

- `violation`: what a job must satisfy to run: a safe id, an interval of at least
  `SCHEDULER_MIN_INTERVAL_SECONDS` and at most ten years, no cron trigger firing more often
  than that. The API refuses such definitions with 400 (app.job_definitions and
  job_manager); a job already in the store that breaks them (written by an older version or by
  hand) is refused when a worker takes the lead: paused, marked in `RefusedJobs`, listed by the
  API with the reason, never run.
- `bound_catching_up`: a wake-up computes a due job's missed run times one by one
  (`Job._get_run_times`): an interval of 1 µs missed for a few seconds was millions of steps on
  the event loop, and a 1 s job missed for a day 86,400. Runs older than the job's
  `misfire_grace_time` are skipped as a whole (APScheduler would only report each of them as
  missed), so a wake-up looks at most grace / interval run times per job.
- `GuardedScheduler`: processes jobs only while `may_run()` says the lease is held. A worker
  whose loop was blocked past its lease (a pause, a stall) finds it lapsed and runs nothing until
  it renews, so two workers never run jobs at once (the lease itself: app.scheduler.leadership).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from datetime import datetime, timedelta
from itertools import pairwise
from typing import Any

from apscheduler.job import Job
from apscheduler.schedulers.asyncio import AsyncIOScheduler
from apscheduler.triggers.base import BaseTrigger
from apscheduler.triggers.cron import CronTrigger
from apscheduler.triggers.interval import IntervalTrigger

from app.job_definitions import (
    JOB_ID_PATTERN,
    JOB_ID_RULE,
    MAX_INTERVAL_SECONDS,
    MAX_JITTER_SECONDS,
)
from app.overrides import unsupported
from app.redis_client import SharedRedis

log = logging.getLogger(__name__)

LEASE_RECHECK_SECONDS = 1.0  # a wake-up without the lease looks again this much later
CRON_SAMPLE = 6  # fire times looked at to find a cron trigger's shortest gap
_SAFE_ID = re.compile(JOB_ID_PATTERN)


def trigger_violation(trigger: BaseTrigger, min_interval: float) -> str | None:
    """Why a trigger may not run here (naming the field), or None."""
    if isinstance(trigger, IntervalTrigger):
        length = trigger.interval_length
        if length < min_interval:
            return (
                f"interval: {length:g} s is shorter than SCHEDULER_MIN_INTERVAL_SECONDS "
                f"({min_interval:g} s)"
            )
        if length > MAX_INTERVAL_SECONDS:
            return "interval: must be at most ten years"
        if trigger.jitter and trigger.jitter > MAX_JITTER_SECONDS:
            return f"jitter: must be at most {MAX_JITTER_SECONDS}"
    elif isinstance(trigger, CronTrigger) and min_interval > 1:  # cron's own step is 1 s
        shortest = _shortest_cron_gap(trigger)
        if shortest is not None and shortest < min_interval:
            return (
                f"cron: fires {shortest:g} s apart, more often than "
                f"SCHEDULER_MIN_INTERVAL_SECONDS ({min_interval:g} s)"
            )
    return None


def _shortest_cron_gap(trigger: CronTrigger) -> float | None:
    now = datetime.now(trigger.timezone)
    times: list[datetime] = []
    previous: datetime | None = None
    for _ in range(CRON_SAMPLE):
        fire_time = trigger.get_next_fire_time(previous, previous or now)
        if fire_time is None:
            break
        times.append(fire_time)
        previous = fire_time + timedelta(microseconds=1)
    gaps = [(later - earlier).total_seconds() for earlier, later in pairwise(times)]
    return min(gaps) if gaps else None


def violation(job: Job, min_interval: float) -> str | None:
    """Why a stored job may not run here, or None."""
    if not isinstance(job.id, str) or not _SAFE_ID.match(job.id):
        return f"id: {JOB_ID_RULE}"
    return trigger_violation(job.trigger, min_interval)


class RefusedJobs:
    """Jobs refused when the leader took over: id -> reason, in Redis (`<prefix>scheduler:
    refused`, shared by every worker) or in memory. Raises `RedisError` when Redis fails."""

    def __init__(self, redis: SharedRedis | None, key: str) -> None:
        self.redis = redis
        self.key = key
        self._local: dict[str, str] = {}

    async def mark(self, job_id: str, reason: str) -> None:
        if self.redis is None:
            self._local[job_id] = reason
        else:
            await self.redis.hset(self.key, job_id, reason)

    async def clear(self, job_id: str) -> None:
        if self.redis is None:
            self._local.pop(job_id, None)
        else:
            await self.redis.hdel(self.key, job_id)

    async def all(self) -> dict[str, str]:
        if self.redis is None:
            return dict(self._local)
        raw = await self.redis.hgetall(self.key)
        return {_text(job_id): _text(reason) for job_id, reason in raw.items()}


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


class GuardedScheduler(AsyncIOScheduler):  # type: ignore[misc]
    """An AsyncIOScheduler that processes jobs only while `may_run()` is true."""

    may_run: Callable[[], bool] = staticmethod(lambda: True)

    def _process_jobs(self) -> float | None:
        if not self.may_run():
            return LEASE_RECHECK_SECONDS
        wait: float | None = super()._process_jobs()
        return wait


def bound_catching_up() -> None:
    """Make `Job._get_run_times` skip, in one step, the runs older than the job's
    `misfire_grace_time` (see the module's docstring). Checked against APScheduler's version;
    idempotent."""
    problems = unsupported(("apscheduler",))  # the releases app/overrides.py lists
    if problems:
        raise RuntimeError(problems[0])
    if getattr(Job._get_run_times, "bounded", False):
        return

    def _get_run_times(self: Job, now: datetime) -> list[datetime]:
        run_times: list[datetime] = []
        next_run_time = self.next_run_time
        grace = self.misfire_grace_time
        if next_run_time is not None and grace is not None:
            horizon = now - timedelta(seconds=grace)
            if next_run_time < horizon:
                first = self.trigger.get_next_fire_time(None, horizon)
                if first is not None and first <= now:
                    skipped_to = first  # the runs within the grace window remain
                elif isinstance(self.trigger, IntervalTrigger) and first is not None:
                    # None in the window: the last run before now stands for the missed ones
                    # (reported missed), and the next is in the future.
                    skipped_to = max(next_run_time, first - self.trigger.interval)
                else:
                    skipped_to = next_run_time  # one step a wake-up, each a bounded one
                if skipped_to != next_run_time:
                    log.warning(
                        "job %s: runs from %s until %s are older than its misfire grace time "
                        "(%s s); skipped",
                        self.id,
                        next_run_time.isoformat(),
                        skipped_to.isoformat(),
                        grace,
                    )
                next_run_time = skipped_to
        while next_run_time and next_run_time <= now:
            run_times.append(next_run_time)
            next_run_time = self.trigger.get_next_fire_time(next_run_time, now)
        return run_times

    _get_run_times.bounded = True  # type: ignore[attr-defined]
    Job._get_run_times = _get_run_times
