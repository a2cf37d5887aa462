"""The worker's scheduler: APScheduler 3 `AsyncIOScheduler` on the service's loop, led by one
worker at a time, with a state and a run history that every worker shares.

This module wires the parts and runs their lifecycle; each part has its own module:
`shared_state` (running/paused/stopped, in Redis), `leadership` (the lease) and `leader` (the
loop that applies it), `job_stores` and `job_manager` (job CRUD, store calls in threads),
`history` (run records from APScheduler's events). The leader's own processing does about two
store round trips per wake-up on the loop (sub-millisecond on a local Redis; README "Scheduler").
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import contextvars
import logging
import socket
from typing import TYPE_CHECKING, Any

from redis.exceptions import RedisError
from sqlalchemy.exc import SQLAlchemyError

from app.db import Database
from app.job_definitions import JobDefinition, parse_job
from app.redis_client import SharedRedis
from app.scheduler.executor import AppContextExecutor
from app.scheduler.fencing import RunClaims
from app.scheduler.guard import GuardedScheduler, RefusedJobs, bound_catching_up
from app.scheduler.history import (
    RECORDED_EVENTS,
    JobRun,
    MemoryRunHistory,
    RedisRunHistory,
    RunRecorder,
)
from app.scheduler.job_context import JOB_RESOURCES, JobResources
from app.scheduler.job_manager import JobManager, VersionedJob
from app.scheduler.job_stores import create_jobstore
from app.scheduler.leader import LeaderLoop
from app.scheduler.leadership import LocalLeadership, RedisLeadership
from app.scheduler.registry import ForbiddenJobFunction
from app.scheduler.serialize import JobDefinitionError
from app.scheduler.shared_state import STOPPED, SchedulerStateError, SharedState, State
from app.services.versions import Precondition
from app.settings import Settings

if TYPE_CHECKING:
    from app.presence.store import PresenceStore

__all__ = ["SchedulerService", "SchedulerStateError"]

log = logging.getLogger(__name__)
# A job store that cannot be reached (Redis, or the database of the SQLAlchemy store).
STORE_FAILURES = (RedisError, SQLAlchemyError, OSError)
PROVISION_RETRY_SECONDS = 5.0

BUILTIN_JOBS: list[dict[str, Any]] = [
    {
        "id": "online_snapshot",
        "name": "online count snapshot",
        "func": "app.scheduler.jobs:snapshot_online_count",
        "trigger": "cron",
        "second": 0,
    },
]
MEMORY_PURGE_JOB: dict[str, Any] = {
    "id": "presence_purge",
    "name": "presence purge",
    "func": "app.scheduler.jobs:purge_presence",
    "trigger": "interval",
    "minutes": 1,
}


class SchedulerService:
    """One worker's view of the shared scheduler.

    Arguments:
        settings: the `SCHEDULER_*` settings.
        redis: the worker's Redis client, or None (one process: it always leads).
        database: where scheduled runs are claimed before they run (app.scheduler.fencing);
            None runs them unclaimed (tests of the scheduler alone).
    """

    def __init__(
        self,
        settings: Settings,
        redis: SharedRedis | None,
        database: Database | None = None,
        presence: PresenceStore | None = None,
    ) -> None:
        self.settings = settings
        self.database = database
        # What the built-in jobs read (app.scheduler.job_context), in every run's context.
        self.job_resources = JobResources(settings, database, presence)
        self.timezone = settings.scheduler_timezone or settings.display_timezone
        self.host_name = socket.gethostname()
        prefix = settings.redis_key_prefix
        self.shared_state = SharedState(redis, f"{prefix}scheduler:state")
        self.leadership: RedisLeadership | LocalLeadership
        self.history: RedisRunHistory | MemoryRunHistory
        if redis is not None:
            self.leadership = RedisLeadership(
                redis,
                key=f"{prefix}scheduler:leader",
                lease_seconds=settings.scheduler_lease_seconds,
            )
            self.history = RedisRunHistory(redis, keep=settings.scheduler_history, prefix=prefix)
        else:
            self.leadership = LocalLeadership()
            self.history = MemoryRunHistory(settings.scheduler_history)
        bound_catching_up()
        self.refused = RefusedJobs(redis, f"{prefix}scheduler:refused")
        self._provisioning: asyncio.Task[None] | None = None
        self.executor = AppContextExecutor()
        self.thread_executor = AppContextExecutor(
            concurrent.futures.ThreadPoolExecutor(
                settings.scheduler_thread_pool_size, thread_name_prefix="scheduler-job"
            )
        )
        self.store = create_jobstore(settings)
        self.scheduler = GuardedScheduler(
            jobstores={"default": self.store},
            executors={
                "default": self.executor,
                "threadpool": self.thread_executor,
            },
            job_defaults={
                "coalesce": settings.scheduler_coalesce,
                "max_instances": settings.scheduler_max_instances,
                "misfire_grace_time": settings.scheduler_misfire_grace_time,
            },
            timezone=self.timezone,
        )
        self.jobs = JobManager(
            self.scheduler,
            store=self.store,
            job_modules=settings.scheduler_job_modules,
            timezone=self.timezone,
            history=self.history,
            worker=self.leadership.identity,
            min_interval=settings.scheduler_min_interval_seconds,
            refused=self.refused,
        )
        self.leader = LeaderLoop(
            self.scheduler,
            self.leadership,
            self.shared_state,
            settings.scheduler_allowed_hosts,
            screen=self.jobs.screen_stored_jobs,
        )

    @property
    def is_leader(self) -> bool:
        return self.leader.is_leader

    # Lifecycle ------------------------------------------------------------------------------

    async def start(self) -> None:
        """Start paused on this loop, add the configured and built-in jobs that are missing, and
        begin competing for leadership. Call it in the app's context (the lifespan): coroutine
        jobs run in a copy of it (app.scheduler.executor).

        Raises:
            ValueError: a job of `SCHEDULER_JOBS` is invalid (named, with the field).
        """
        context = contextvars.copy_context()
        context.run(JOB_RESOURCES.set, self.job_resources)
        claims = (
            RunClaims(self.database, self.leadership.identity).claim
            if self.database is not None
            else None
        )
        for executor in (self.executor, self.thread_executor):
            executor.use_context(context)
            if claims is not None:
                executor.use_claims(claims)
        recorder = RunRecorder(self.history, self.leadership.identity, asyncio.get_running_loop())
        self.scheduler.add_listener(recorder, RECORDED_EVENTS)
        self.scheduler.start(paused=True)
        definitions = list(self.settings.scheduler_jobs)
        if self.settings.scheduler_builtin_jobs:
            definitions += [parse_job(job) for job in BUILTIN_JOBS]
            if self.settings.effective_presence_backend == "memory":
                definitions.append(parse_job(MEMORY_PURGE_JOB))
        try:
            await self._add_missing(definitions)
        except STORE_FAILURES as error:
            # The job store (Redis, or the database) is down: serve anyway, as the rest of the
            # service does (503s where the scheduler is needed), and add them once it is back.
            log.warning(
                "scheduler: the job store is unreachable (%s); its jobs are added when it is "
                "back, every %.0f s",
                type(error).__name__,
                PROVISION_RETRY_SECONDS,
            )
            self._provisioning = asyncio.create_task(self._add_missing_when_back(definitions))
        self.leader.start()

    async def _add_missing(self, definitions: list[JobDefinition]) -> None:
        for job in definitions:
            try:
                await asyncio.to_thread(self.jobs.add, job, if_missing=True)
            except (JobDefinitionError, ForbiddenJobFunction) as error:
                raise ValueError(f"SCHEDULER_JOBS: job {job.id!r}: {error}") from error

    async def _add_missing_when_back(self, definitions: list[JobDefinition]) -> None:
        while True:
            await asyncio.sleep(PROVISION_RETRY_SECONDS)
            try:
                await self._add_missing(definitions)
            except STORE_FAILURES:
                continue
            except ValueError:
                log.exception("scheduler: configured jobs refused")
                return
            log.info("scheduler: the job store is back; configured jobs added")
            return

    async def stop(self) -> None:
        if self._provisioning is not None:
            self._provisioning.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._provisioning
        await self.leader.stop()
        if self.scheduler.running:
            self.scheduler.shutdown(wait=False)

    # Shared state (Flask-APScheduler's scheduler routes) ------------------------------------

    async def state(self) -> State:
        return await self.shared_state.get()

    async def info(self) -> dict[str, Any]:
        """`{"current_host", "allowed_hosts", "running"}` (Flask-APScheduler), plus `leader` and
        `state`."""
        state = await self.shared_state.get()
        return {
            "current_host": self.host_name,
            "allowed_hosts": self.settings.scheduler_allowed_hosts,
            "running": state != STOPPED,
            "state": state,
            "leader": await self.leadership.leader(),
        }

    async def pause(self) -> None:
        await self.shared_state.pause()

    async def resume(self) -> None:
        await self.shared_state.resume()

    async def start_processing(self) -> None:
        await self.shared_state.start()

    async def shutdown(self) -> None:
        await self.shared_state.shutdown()

    # Jobs (app.scheduler.job_manager) -------------------------------------------------------

    async def add_job(self, job: JobDefinition) -> VersionedJob:
        return await self.jobs.add_job(job)

    async def get_jobs(self) -> list[dict[str, Any]]:
        return await self.jobs.get_jobs()

    async def get_job(self, job_id: str) -> VersionedJob:
        return await self.jobs.get_job(job_id)

    async def job_version(self, job_id: str) -> int:
        return await self.jobs.job_version(job_id)

    async def modify_job(
        self, job_id: str, job: JobDefinition, precondition: Precondition | None = None
    ) -> VersionedJob:
        return await self.jobs.modify_job(job_id, job, precondition)

    async def remove_job(self, job_id: str, precondition: Precondition | None = None) -> None:
        await self.jobs.remove_job(job_id, precondition)

    async def pause_job(self, job_id: str) -> VersionedJob:
        return await self.jobs.pause_job(job_id)

    async def resume_job(self, job_id: str) -> VersionedJob:
        return await self.jobs.resume_job(job_id)

    async def run_job(self, job_id: str) -> VersionedJob:
        """Run the job now, here, with the resources a scheduled run has."""
        given = JOB_RESOURCES.set(self.job_resources)
        try:
            return await self.jobs.run_job(job_id)
        finally:
            JOB_RESOURCES.reset(given)

    async def runs(self, job_id: str) -> list[JobRun]:
        return await self.jobs.runs(job_id)
