"""Run history of each job: scheduled time, start, duration, outcome and error text.

Kept in Redis (a capped list per job, shared by every worker) or in memory, newest first.
`RunRecorder` turns APScheduler's job events into these records (and the
`scheduler_job_runs_total` metric).
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections import defaultdict, deque
from datetime import UTC, datetime
from typing import Literal, Protocol, TypedDict

from apscheduler.events import (
    EVENT_JOB_ERROR,
    EVENT_JOB_EXECUTED,
    EVENT_JOB_MAX_INSTANCES,
    EVENT_JOB_MISSED,
    EVENT_JOB_SUBMITTED,
    JobEvent,
    JobExecutionEvent,
    JobSubmissionEvent,
)

from app.metrics import SCHEDULER_RUNS
from app.redis_client import SharedRedis

log = logging.getLogger(__name__)

Outcome = Literal["success", "error", "missed", "skipped"]
RECORDED_EVENTS = (
    EVENT_JOB_SUBMITTED
    | EVENT_JOB_EXECUTED
    | EVENT_JOB_ERROR
    | EVENT_JOB_MISSED
    | EVENT_JOB_MAX_INSTANCES
)
OUTCOMES: dict[int, Outcome] = {
    EVENT_JOB_EXECUTED: "success",
    EVENT_JOB_ERROR: "error",
    EVENT_JOB_MISSED: "missed",
    EVENT_JOB_MAX_INSTANCES: "skipped",
}


class JobRun(TypedDict):
    """One run, as `GET /scheduler/jobs/<id>/runs` lists it (times ISO 8601, duration in s)."""

    scheduled_time: str | None
    start: str | None
    duration: float | None
    outcome: Outcome
    error: str | None
    manual: bool
    worker: str


class RunHistory(Protocol):
    async def record(self, job_id: str, run: JobRun) -> None: ...

    async def runs(self, job_id: str) -> list[JobRun]: ...

    async def forget(self, job_id: str) -> None: ...


class MemoryRunHistory:
    def __init__(self, keep: int) -> None:
        self._runs: dict[str, deque[JobRun]] = defaultdict(lambda: deque(maxlen=keep))

    async def record(self, job_id: str, run: JobRun) -> None:
        self._runs[job_id].appendleft(run)

    async def runs(self, job_id: str) -> list[JobRun]:
        return list(self._runs.get(job_id, ()))

    async def forget(self, job_id: str) -> None:
        self._runs.pop(job_id, None)


class RedisRunHistory:
    def __init__(self, redis: SharedRedis, *, keep: int, prefix: str = "") -> None:
        self.redis = redis
        self.keep = keep
        self.prefix = prefix

    def _key(self, job_id: str) -> str:
        return f"{self.prefix}scheduler:runs:{job_id}"

    async def record(self, job_id: str, run: JobRun) -> None:
        async with self.redis.pipeline(transaction=True) as pipeline:
            pipeline.lpush(self._key(job_id), json.dumps(run))
            pipeline.ltrim(self._key(job_id), 0, self.keep - 1)
            await pipeline.execute()

    async def runs(self, job_id: str) -> list[JobRun]:
        items = await self.redis.lrange(self._key(job_id), 0, -1)
        return [json.loads(item) for item in items]

    async def forget(self, job_id: str) -> None:
        await self.redis.delete(self._key(job_id))


class RunRecorder:
    """An APScheduler listener that records each scheduled run in `history`.

    APScheduler calls listeners from any thread (thread-pool jobs report from their thread), so
    the record is written by a task on `loop`; the tasks are kept until done.
    """

    def __init__(self, history: RunHistory, worker: str, loop: asyncio.AbstractEventLoop) -> None:
        self.history = history
        self.worker = worker
        self.loop = loop
        self._started: dict[tuple[str, str], float] = {}
        self._pending: set[asyncio.Future[None]] = set()

    def __call__(self, event: JobEvent) -> None:
        if isinstance(event, JobSubmissionEvent):
            for scheduled in event.scheduled_run_times:
                self._started[(event.job_id, scheduled.isoformat())] = time.time()
            return
        if not isinstance(event, JobExecutionEvent):
            return
        scheduled = event.scheduled_run_time.isoformat()
        started = self._started.pop((event.job_id, scheduled), None)
        outcome = OUTCOMES[event.code]
        SCHEDULER_RUNS.labels(outcome).inc()
        error = event.exception
        run: JobRun = {
            "scheduled_time": scheduled,
            "start": datetime.fromtimestamp(started, UTC).isoformat() if started else None,
            "duration": round(time.time() - started, 6) if started else None,
            "outcome": outcome,
            "error": f"{type(error).__name__}: {error}" if error is not None else None,
            "manual": False,
            "worker": self.worker,
        }
        self.loop.call_soon_threadsafe(self._record_soon, event.job_id, run)

    def _record_soon(self, job_id: str, run: JobRun) -> None:
        task = asyncio.ensure_future(self.history.record(job_id, run))
        self._pending.add(task)
        task.add_done_callback(self._done)

    def _done(self, task: asyncio.Future[None]) -> None:
        self._pending.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.warning("run history not recorded: %s", task.exception())
