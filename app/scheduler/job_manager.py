"""Job CRUD for the scheduler API, in Flask-APScheduler's job format (app.scheduler.serialize).

APScheduler 3's job stores are synchronous, so every store call runs in a worker thread
(`asyncio.to_thread`), never on the event loop.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from apscheduler.job import Job
from apscheduler.jobstores.base import ConflictingIdError, JobLookupError
from apscheduler.schedulers.asyncio import AsyncIOScheduler
from apscheduler.triggers.base import BaseTrigger
from apscheduler.util import ref_to_obj

from app.job_definitions import IntervalJob, JobDefinition, job_arguments
from app.metrics import SCHEDULER_RUNS
from app.scheduler.guard import RefusedJobs, trigger_violation, violation
from app.scheduler.history import JobRun, Outcome, RunHistory
from app.scheduler.job_stores import VersionedJobStore, required_version
from app.scheduler.registry import check_func
from app.scheduler.serialize import JobDefinitionError, build_trigger, job_to_dict
from app.services.versions import Precondition

log = logging.getLogger(__name__)


def _now() -> datetime:
    return datetime.now(UTC)


def _with_refusal(job: dict[str, Any], reason: str | None) -> dict[str, Any]:
    if reason is not None:
        job["refused"] = reason
    return job


@dataclass(frozen=True, slots=True)
class VersionedJob:
    """A job in Flask-APScheduler's format (`job_to_dict`) and its store version (the ETag);
    version None: the job is gone already (a date job run at once)."""

    data: dict[str, Any]
    version: int | None


class JobManager:
    """Arguments: scheduler, the worker's AsyncIOScheduler; store, its job store;
    job_modules, the modules whose public functions may be jobs (SCHEDULER_JOB_MODULES);
    timezone, the triggers' default; history, the run history; worker, this worker's identity
    (recorded with manual runs)."""

    def __init__(
        self,
        scheduler: AsyncIOScheduler,
        *,
        store: VersionedJobStore,
        job_modules: list[str],
        timezone: Any,
        history: RunHistory,
        worker: str,
        min_interval: float = 1.0,
        refused: RefusedJobs | None = None,
    ) -> None:
        self.scheduler = scheduler
        self.store = store
        self.job_modules = job_modules
        self.timezone = timezone
        self.history = history
        self.worker = worker
        self.min_interval = min_interval
        self.refused = refused or RefusedJobs(None, "")

    def _checked_trigger(self, job: JobDefinition) -> BaseTrigger | None:
        """The definition's trigger, if it may run here. Raises `JobDefinitionError`."""
        trigger = build_trigger(job, self.timezone)
        if trigger is not None:
            reason = trigger_violation(trigger, self.min_interval)
            if reason is not None:
                if isinstance(job, IntervalJob) and reason.startswith("interval:"):
                    reason = f"{job.period_field}:{reason.removeprefix('interval:')}"
                raise JobDefinitionError(reason)
        return trigger

    async def screen_stored_jobs(self) -> None:
        """Refuse the stored jobs that may not run (app.scheduler.guard.violation): paused,
        marked with the reason (listed by the API), logged. Run by a worker taking the lead,
        before its scheduler looks at them."""
        jobs = await asyncio.to_thread(self.scheduler.get_jobs)
        for job in jobs:
            reason = violation(job, self.min_interval)
            if reason is None:
                continue
            log.error("job %r refused, and paused: %s", job.id, reason)
            await self.refused.mark(job.id, reason)
            # A write either way: the version (ETag) changes with the refusal it shows.
            if job.next_run_time is not None:
                await asyncio.to_thread(self.scheduler.pause_job, job.id)
            else:
                await asyncio.to_thread(self.scheduler.modify_job, job.id)

    def add(self, job: JobDefinition, *, if_missing: bool = False) -> Job:
        """Add a validated job (synchronous: call it in a thread). Raises `JobDefinitionError`,
        `ForbiddenJobFunction` or `ConflictingIdError`."""
        if job.func is None:
            raise JobDefinitionError("func: required")
        arguments = job_arguments(job)
        arguments["func"] = check_func(job.func, self.job_modules)
        trigger = self._checked_trigger(job)
        replace = arguments.pop("replace_existing", False)
        if if_missing and job.id and (existing := self.scheduler.get_job(job.id)):
            return existing
        try:
            return self.scheduler.add_job(trigger=trigger, replace_existing=replace, **arguments)
        except ConflictingIdError:
            if if_missing:  # another worker added it meanwhile
                return self.scheduler.get_job(job.id)
            raise
        except (ValueError, TypeError) as error:  # APScheduler checks args against the function
            raise JobDefinitionError(f"args: {error}") from error

    def _versioned(self, job_id: str) -> tuple[Job, int]:
        """The stored job and its version (synchronous). Raises `JobLookupError`."""
        found = self.store.lookup_versioned(job_id)
        if found is None:
            raise JobLookupError(job_id)
        return found

    async def add_job(self, job: JobDefinition) -> VersionedJob:
        """Raises `JobDefinitionError`, `ForbiddenJobFunction` or `ConflictingIdError`."""
        added = await asyncio.to_thread(self.add, job)
        await self.refused.clear(added.id)  # a job of that id refused before is gone
        stored = await asyncio.to_thread(self.store.lookup_versioned, added.id)
        if stored is None:
            return VersionedJob(job_to_dict(added), None)
        return VersionedJob(job_to_dict(stored[0]), stored[1])

    async def get_jobs(self) -> list[dict[str, Any]]:
        """Every job; a refused one carries `"refused": <reason>` (and is paused)."""
        jobs = await asyncio.to_thread(self.scheduler.get_jobs)
        refused = await self.refused.all()
        return [_with_refusal(job_to_dict(job), refused.get(job.id)) for job in jobs]

    async def get_job(self, job_id: str) -> VersionedJob:
        """Raises `JobLookupError`."""
        job, version = await asyncio.to_thread(self._versioned, job_id)
        return VersionedJob(
            _with_refusal(job_to_dict(job), (await self.refused.all()).get(job_id)), version
        )

    async def job_version(self, job_id: str) -> int:
        """The job's current version (for If-None-Match). Raises `JobLookupError`."""
        return (await asyncio.to_thread(self._versioned, job_id))[1]

    def _modify(
        self, job_id: str, job: JobDefinition, precondition: Precondition | None
    ) -> tuple[Job, int]:
        changes = job_arguments(job)
        if "id" in changes and changes["id"] != job_id:
            raise JobDefinitionError("id: a job's id cannot be changed")
        changes.pop("id", None)
        changes.pop("replace_existing", None)
        if self.scheduler.get_job(job_id) is None:
            raise JobLookupError(job_id)
        if job.func is not None:
            changes["func"] = check_func(job.func, self.job_modules)
        trigger = self._checked_trigger(job)  # None: the schedule is unchanged
        try:
            with required_version(precondition):  # checked by the first write
                if trigger is not None:
                    self.scheduler.reschedule_job(job_id, trigger=trigger)
                if changes or trigger is None:  # an empty change still writes (and checks)
                    self.scheduler.modify_job(job_id, **changes)
        except (ValueError, TypeError) as error:  # APScheduler checks args against the function
            raise JobDefinitionError(f"args: {error}") from error
        # The leader may have removed the job meanwhile: a run it began before this change
        # found no next fire time under the old trigger (e.g. a date job that just ran).
        return self._versioned(job_id)

    async def modify_job(
        self, job_id: str, job: JobDefinition, precondition: Precondition | None = None
    ) -> VersionedJob:
        """Change the fields `job` gives (PATCH); with a trigger or crontab it is rescheduled.
        Raises `JobLookupError`, `JobDefinitionError`, `ForbiddenJobFunction` or, when the
        job's version is not among `precondition`'s (If-Match), `PreconditionFailedError`. A
        refused job whose new trigger may run is no longer refused (it stays paused until
        resumed)."""
        modified, version = await asyncio.to_thread(self._modify, job_id, job, precondition)
        if violation(modified, self.min_interval) is None:
            await self.refused.clear(job_id)
        return VersionedJob(
            _with_refusal(job_to_dict(modified), (await self.refused.all()).get(job_id)), version
        )

    def _remove(self, job_id: str, precondition: Precondition | None) -> None:
        with required_version(precondition):
            self.scheduler.remove_job(job_id)

    async def remove_job(self, job_id: str, precondition: Precondition | None = None) -> None:
        """Raises `JobLookupError`, or `PreconditionFailedError` (If-Match)."""
        await asyncio.to_thread(self._remove, job_id, precondition)
        await self.history.forget(job_id)
        await self.refused.clear(job_id)

    def _pause(self, job_id: str) -> tuple[Job, int]:
        self.scheduler.pause_job(job_id)
        return self._versioned(job_id)

    async def pause_job(self, job_id: str) -> VersionedJob:
        job, version = await asyncio.to_thread(self._pause, job_id)
        return VersionedJob(job_to_dict(job), version)

    async def resume_job(self, job_id: str) -> VersionedJob:
        """Raises `JobLookupError`, or `JobDefinitionError` for a job that may not run here
        (refused: change its trigger first)."""
        stored = await asyncio.to_thread(self.scheduler.get_job, job_id)
        if stored is None:
            raise JobLookupError(job_id)
        reason = violation(stored, self.min_interval)
        if reason is not None:
            raise JobDefinitionError(f"{reason} (the job is refused: PATCH its trigger first)")
        job = await asyncio.to_thread(self.scheduler.resume_job, job_id)
        if job is None:  # a date job whose time has passed: APScheduler removed it
            raise JobLookupError(job_id)
        resumed, version = await asyncio.to_thread(self._versioned, job_id)
        return VersionedJob(job_to_dict(resumed), version)

    async def run_job(self, job_id: str) -> VersionedJob:
        """Run the job now, on this worker, once (Flask-APScheduler's `run_job`); its schedule is
        unchanged and the run is recorded in the history as manual."""
        job, version = await asyncio.to_thread(self._versioned, job_id)
        function = ref_to_obj(job.func_ref)
        started, error_text = _now(), None
        outcome: Outcome = "success"
        clock = time.perf_counter()
        try:
            if inspect.iscoroutinefunction(function):
                await function(*job.args, **job.kwargs)
            else:
                await asyncio.to_thread(function, *job.args, **job.kwargs)
        except Exception as error:
            outcome, error_text = "error", f"{type(error).__name__}: {error}"
        SCHEDULER_RUNS.labels(outcome).inc()
        run: JobRun = {
            "scheduled_time": None,
            "start": started.isoformat(),
            "duration": round(time.perf_counter() - clock, 6),
            "outcome": outcome,
            "error": error_text,
            "manual": True,
            "worker": self.worker,
        }
        await self.history.record(job_id, run)
        return VersionedJob(job_to_dict(job), version)

    async def runs(self, job_id: str) -> list[JobRun]:
        await self.get_job(job_id)
        return await self.history.runs(job_id)
