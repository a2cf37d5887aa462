"""The worker's scheduler: APScheduler 3 `AsyncIOScheduler` on the service's loop, led by one
worker at a time, with a state and a run history that every worker shares.

State (`running`, `paused`, `stopped`) and leadership live in Redis when it is configured, so
`POST /scheduler/pause` on any worker pauses job processing everywhere. Job-store calls of
APScheduler 3 are synchronous (the Redis and SQLAlchemy stores use blocking clients): the API
runs them in a worker thread, and the leader's own processing does about two store round trips
per wake-up on the loop (sub-millisecond on a local Redis; README "Scheduler" gives the cost).
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
import socket
import time
from datetime import UTC, datetime
from typing import Any

from apscheduler.events import (
    EVENT_JOB_ERROR,
    EVENT_JOB_EXECUTED,
    EVENT_JOB_MAX_INSTANCES,
    EVENT_JOB_MISSED,
    EVENT_JOB_SUBMITTED,
    JobExecutionEvent,
    JobSubmissionEvent,
)
from apscheduler.executors.asyncio import AsyncIOExecutor
from apscheduler.executors.pool import ThreadPoolExecutor
from apscheduler.job import Job
from apscheduler.jobstores.base import ConflictingIdError, JobLookupError
from apscheduler.jobstores.memory import MemoryJobStore
from apscheduler.schedulers.asyncio import AsyncIOScheduler
from apscheduler.util import ref_to_obj
from quart import Quart
from redis.asyncio import Redis

from app.metrics import SCHEDULER_LEADER, SCHEDULER_RUNS
from app.scheduler import jobs as builtin_jobs  # noqa: F401 (registers the built-in functions)
from app.scheduler import runtime
from app.scheduler.history import MemoryRunHistory, RedisRunHistory
from app.scheduler.leadership import LocalLeadership, RedisLeadership
from app.scheduler.registry import check_func
from app.scheduler.serialize import JobDefinitionError, build_trigger, check_job_fields, job_to_dict
from app.settings import Settings

log = logging.getLogger(__name__)

RUNNING, PAUSED, STOPPED = "running", "paused", "stopped"
TICK_SECONDS = 1.0
BUILTIN_JOBS = [
    {
        "id": "online_snapshot",
        "name": "online count snapshot",
        "func": "app.scheduler.jobs:snapshot_online_count",
        "trigger": "cron",
        "second": 0,
    },
]
MEMORY_PURGE_JOB = {
    "id": "presence_purge",
    "name": "presence purge",
    "func": "app.scheduler.jobs:purge_presence",
    "trigger": "interval",
    "minutes": 1,
}


class SchedulerStateError(Exception):
    """Start when running, shutdown when stopped (Flask-APScheduler answers 400)."""


def _now() -> datetime:
    return datetime.now(UTC)


def _jobstore(settings: Settings) -> Any:
    kind = settings.effective_scheduler_jobstore
    if kind == "redis":
        from apscheduler.jobstores.redis import RedisJobStore
        from redis.connection import parse_url

        from app.redis_client import redis_options

        options = parse_url(settings.redis_url)
        prefix = settings.redis_key_prefix
        # APScheduler's Redis job store is synchronous (calls run in threads): the same bounds
        # as the async client (REDIS_TIMEOUT for connect and reads, no retries).
        from redis.backoff import NoBackoff
        from redis.retry import Retry

        sync_options = {**redis_options(settings), "retry": Retry(NoBackoff(), 0)}
        return RedisJobStore(
            jobs_key=f"{prefix}scheduler:jobs",
            run_times_key=f"{prefix}scheduler:run_times",
            **sync_options,
            **options,
        )
    if kind == "sqlalchemy":
        from apscheduler.jobstores.sqlalchemy import SQLAlchemyJobStore

        return SQLAlchemyJobStore(
            url=settings.scheduler_sqlalchemy_url, tablename="apscheduler_jobs"
        )
    return MemoryJobStore()


class SchedulerService:
    """One worker's view of the shared scheduler.

    Arguments:
        settings: the `SCHEDULER_*` settings.
        redis: the worker's Redis client, or None (one process: it always leads).
    """

    def __init__(self, settings: Settings, redis: Redis | None) -> None:
        self.settings = settings
        self.redis = redis
        self.timezone = settings.scheduler_timezone or settings.display_timezone
        self.host_name = socket.gethostname()
        self.allowed_hosts = settings.scheduler_allowed_hosts
        prefix = settings.redis_key_prefix
        self._state_key = f"{prefix}scheduler:state"
        self._local_state = RUNNING
        if redis is not None:
            self.leadership: RedisLeadership | LocalLeadership = RedisLeadership(
                redis,
                key=f"{prefix}scheduler:leader",
                lease_seconds=settings.scheduler_lease_seconds,
            )
            self.history: RedisRunHistory | MemoryRunHistory = RedisRunHistory(
                redis, keep=settings.scheduler_history, prefix=prefix
            )
        else:
            self.leadership = LocalLeadership()
            self.history = MemoryRunHistory(settings.scheduler_history)
        self.scheduler = AsyncIOScheduler(
            jobstores={"default": _jobstore(settings)},
            executors={
                "default": AsyncIOExecutor(),
                "threadpool": ThreadPoolExecutor(settings.scheduler_thread_pool_size),
            },
            job_defaults={
                "coalesce": settings.scheduler_coalesce,
                "max_instances": settings.scheduler_max_instances,
                "misfire_grace_time": settings.scheduler_misfire_grace_time,
            },
            timezone=self.timezone,
        )
        self.is_leader = False
        self._stopping = False
        self._task: asyncio.Task | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._started: dict[tuple[str, str], float] = {}

    # Lifecycle ------------------------------------------------------------------------------

    async def start(self, app: Quart) -> None:
        """Start paused on this loop, add the configured and built-in jobs that are missing, and
        begin competing for leadership."""
        runtime.set_app(app)
        self._loop = asyncio.get_running_loop()
        self.scheduler.add_listener(
            self._on_event,
            EVENT_JOB_SUBMITTED
            | EVENT_JOB_EXECUTED
            | EVENT_JOB_ERROR
            | EVENT_JOB_MISSED
            | EVENT_JOB_MAX_INSTANCES,
        )
        self.scheduler.start(paused=True)
        definitions = list(self.settings.scheduler_jobs)
        if self.settings.scheduler_builtin_jobs:
            definitions += BUILTIN_JOBS
            if self.settings.effective_presence_backend == "memory":
                definitions.append(MEMORY_PURGE_JOB)
        for definition in definitions:
            try:
                await asyncio.to_thread(self._add, dict(definition), if_missing=True)
            except (JobDefinitionError, ValueError) as error:
                raise ValueError(
                    f"SCHEDULER_JOBS: job {definition.get('id')!r}: {error}"
                ) from error
        self._task = asyncio.create_task(self._lead(), name="scheduler-leadership")

    async def stop(self) -> None:
        self._stopping = True
        if self._task is not None:
            self._task.cancel()
            # Bounded: a Redis call cut by the cancellation may take a while to unwind.
            await asyncio.wait({self._task}, timeout=1)
        if self.scheduler.running:
            self.scheduler.shutdown(wait=False)
        if self.is_leader:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.leadership.release(), 1)
        self.is_leader = False
        runtime.set_app(None)

    def _host_allowed(self) -> bool:
        return "*" in self.allowed_hosts or self.host_name in self.allowed_hosts

    async def _lead(self) -> None:
        """Hold (or try to take) the lease; run jobs only while leading and `running`."""
        while not self._stopping:
            try:
                leads = self._host_allowed() and await self.leadership.acquire_or_renew()
                should_run = leads and await self.state() == RUNNING
            except Exception as error:
                if self.is_leader:  # once per outage, not once a tick
                    log.warning(
                        "scheduler leadership check failed (%s): stepping down",
                        type(error).__name__,
                    )
                leads = should_run = False
            if self._stopping:  # a cancelled Redis call may return instead of raising
                break
            if leads != self.is_leader:
                log.info(
                    "scheduler leadership %s by %s",
                    "taken" if leads else "lost",
                    self.leadership.identity,
                )
            self.is_leader = leads
            SCHEDULER_LEADER.set(1 if leads else 0)
            paused = self.scheduler.state == 2  # apscheduler.schedulers.base.STATE_PAUSED
            if should_run and paused:
                self.scheduler.resume()
            elif not should_run and not paused:
                self.scheduler.pause()
            elif should_run:
                self.scheduler.wakeup()  # jobs may have been changed through another worker
            await asyncio.sleep(TICK_SECONDS)

    # Shared state ---------------------------------------------------------------------------

    async def state(self) -> str:
        if self.redis is None:
            return self._local_state
        return str(await self.redis.get(self._state_key) or RUNNING)

    async def _set_state(self, state: str) -> None:
        if self.redis is None:
            self._local_state = state
        else:
            await self.redis.set(self._state_key, state)

    async def info(self) -> dict[str, Any]:
        """`{"current_host", "allowed_hosts", "running"}` (Flask-APScheduler), plus `leader` and
        `state`."""
        state = await self.state()
        return {
            "current_host": self.host_name,
            "allowed_hosts": self.allowed_hosts,
            "running": state != STOPPED,
            "state": state,
            "leader": await self.leadership.leader(),
        }

    async def pause(self) -> None:
        if await self.state() == STOPPED:
            raise SchedulerStateError("Scheduler is not running")
        await self._set_state(PAUSED)

    async def resume(self) -> None:
        if await self.state() == STOPPED:
            raise SchedulerStateError("Scheduler is not running")
        await self._set_state(RUNNING)

    async def start_processing(self) -> None:
        if await self.state() != STOPPED:
            raise SchedulerStateError("Scheduler is already running")
        await self._set_state(RUNNING)

    async def shutdown(self) -> None:
        if await self.state() == STOPPED:
            raise SchedulerStateError("Scheduler is not running")
        await self._set_state(STOPPED)

    # Jobs (synchronous store calls run in a thread) -----------------------------------------

    def _add(self, data: dict[str, Any], *, if_missing: bool = False) -> Job:
        check_job_fields(data, partial=False)
        data["func"] = check_func(data["func"], self.settings.scheduler_job_modules)
        trigger = build_trigger(data, self.timezone)
        replace = data.pop("replace_existing", False)
        if if_missing and data.get("id") and self.scheduler.get_job(data["id"]):
            return self.scheduler.get_job(data["id"])
        try:
            return self.scheduler.add_job(trigger=trigger, replace_existing=replace, **data)
        except ConflictingIdError:
            if if_missing:  # another worker added it meanwhile
                return self.scheduler.get_job(data["id"])
            raise
        except (ValueError, TypeError) as error:  # APScheduler checks args against the function
            raise JobDefinitionError(f"args: {error}") from error

    async def add_job(self, definition: dict[str, Any]) -> dict[str, Any]:
        """Raises `JobDefinitionError`, `ForbiddenJobFunction` or `ConflictingIdError`."""
        return job_to_dict(await asyncio.to_thread(self._add, dict(definition)))

    async def get_jobs(self) -> list[dict[str, Any]]:
        jobs = await asyncio.to_thread(self.scheduler.get_jobs)
        return [job_to_dict(job) for job in jobs]

    async def get_job(self, job_id: str) -> dict[str, Any]:
        """Raises `JobLookupError`."""
        job = await asyncio.to_thread(self.scheduler.get_job, job_id)
        if job is None:
            raise JobLookupError(job_id)
        return job_to_dict(job)

    def _modify(self, job_id: str, changes: dict[str, Any]) -> Job:
        check_job_fields(changes, partial=True)
        if "id" in changes and changes["id"] != job_id:
            raise JobDefinitionError("id: a job's id cannot be changed")
        changes.pop("id", None)
        changes.pop("replace_existing", None)
        if self.scheduler.get_job(job_id) is None:
            raise JobLookupError(job_id)
        if "func" in changes:
            changes["func"] = check_func(changes["func"], self.settings.scheduler_job_modules)
        trigger = build_trigger(changes, self.timezone)
        try:
            if trigger is not None:
                self.scheduler.reschedule_job(job_id, trigger=trigger)
            if changes:
                self.scheduler.modify_job(job_id, **changes)
        except (ValueError, TypeError) as error:  # APScheduler checks args against the function
            raise JobDefinitionError(f"args: {error}") from error
        return self.scheduler.get_job(job_id)

    async def modify_job(self, job_id: str, changes: dict[str, Any]) -> dict[str, Any]:
        return job_to_dict(await asyncio.to_thread(self._modify, job_id, dict(changes)))

    async def remove_job(self, job_id: str) -> None:
        await asyncio.to_thread(self.scheduler.remove_job, job_id)
        await self.history.forget(job_id)

    async def pause_job(self, job_id: str) -> dict[str, Any]:
        return job_to_dict(await asyncio.to_thread(self.scheduler.pause_job, job_id))

    async def resume_job(self, job_id: str) -> dict[str, Any]:
        job = await asyncio.to_thread(self.scheduler.resume_job, job_id)
        if job is None:  # a date job whose time has passed: APScheduler removed it
            raise JobLookupError(job_id)
        return job_to_dict(job)

    async def run_job(self, job_id: str) -> dict[str, Any]:
        """Run the job now, on this worker, once (Flask-APScheduler's `run_job`); its schedule is
        unchanged and the run is recorded in the history as manual."""
        job = await asyncio.to_thread(self.scheduler.get_job, job_id)
        if job is None:
            raise JobLookupError(job_id)
        function = ref_to_obj(job.func_ref)
        started, outcome, error_text = _now(), "success", None
        clock = time.perf_counter()
        try:
            if inspect.iscoroutinefunction(function):
                await function(*job.args, **job.kwargs)
            else:
                await asyncio.to_thread(function, *job.args, **job.kwargs)
        except Exception as error:
            outcome, error_text = "error", f"{type(error).__name__}: {error}"
        SCHEDULER_RUNS.labels(outcome).inc()
        await self.history.record(
            job_id,
            {
                "scheduled_time": None,
                "start": started.isoformat(),
                "duration": round(time.perf_counter() - clock, 6),
                "outcome": outcome,
                "error": error_text,
                "manual": True,
                "worker": self.leadership.identity,
            },
        )
        return job_to_dict(job)

    async def runs(self, job_id: str) -> list[dict[str, Any]]:
        await self.get_job(job_id)
        return await self.history.runs(job_id)

    # Run history ----------------------------------------------------------------------------

    def _on_event(self, event: Any) -> None:
        """APScheduler listener (any thread): turn job events into history records."""
        if isinstance(event, JobSubmissionEvent):
            for scheduled in event.scheduled_run_times:
                self._started[(event.job_id, scheduled.isoformat())] = time.time()
            return
        if not isinstance(event, JobExecutionEvent):
            return
        scheduled = event.scheduled_run_time.isoformat()
        started = self._started.pop((event.job_id, scheduled), None)
        outcome = {
            EVENT_JOB_EXECUTED: "success",
            EVENT_JOB_ERROR: "error",
            EVENT_JOB_MISSED: "missed",
            EVENT_JOB_MAX_INSTANCES: "skipped",
        }[event.code]
        SCHEDULER_RUNS.labels(outcome).inc()
        error = event.exception
        run = {
            "scheduled_time": scheduled,
            "start": datetime.fromtimestamp(started, UTC).isoformat() if started else None,
            "duration": round(time.time() - started, 6) if started else None,
            "outcome": outcome,
            "error": f"{type(error).__name__}: {error}" if error is not None else None,
            "manual": False,
            "worker": self.leadership.identity,
        }
        if self._loop is not None:
            self._loop.call_soon_threadsafe(self._record_soon, event.job_id, run)

    def _record_soon(self, job_id: str, run: dict[str, Any]) -> None:
        task = asyncio.ensure_future(self.history.record(job_id, run))
        task.add_done_callback(_log_history_failure)


def _log_history_failure(task: asyncio.Future[Any]) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.warning("run history not recorded: %s", task.exception())
