"""Job CRUD for the scheduler API, in Flask-APScheduler's job format (app.scheduler.serialize).

APScheduler 3's job stores are synchronous, so every store call runs in a worker thread
(`asyncio.to_thread`), never on the event loop.
"""

from __future__ import annotations

import asyncio
import inspect
import time
from datetime import UTC, datetime
from typing import Any

from apscheduler.job import Job
from apscheduler.jobstores.base import ConflictingIdError, JobLookupError
from apscheduler.schedulers.asyncio import AsyncIOScheduler
from apscheduler.util import ref_to_obj

from app.metrics import SCHEDULER_RUNS
from app.scheduler.definitions import JobDefinition, job_arguments
from app.scheduler.history import JobRun, Outcome, RunHistory
from app.scheduler.registry import check_func
from app.scheduler.serialize import JobDefinitionError, build_trigger, job_to_dict


def _now() -> datetime:
    return datetime.now(UTC)


class JobManager:
    """Arguments: scheduler, the worker's AsyncIOScheduler; job_modules, the modules whose
    public functions may be jobs (SCHEDULER_JOB_MODULES); timezone, the triggers' default;
    history, the run history; worker, this worker's identity (recorded with manual runs)."""

    def __init__(
        self,
        scheduler: AsyncIOScheduler,
        *,
        job_modules: list[str],
        timezone: Any,
        history: RunHistory,
        worker: str,
    ) -> None:
        self.scheduler = scheduler
        self.job_modules = job_modules
        self.timezone = timezone
        self.history = history
        self.worker = worker

    def add(self, job: JobDefinition, *, if_missing: bool = False) -> Job:
        """Add a validated job (synchronous: call it in a thread). Raises `JobDefinitionError`,
        `ForbiddenJobFunction` or `ConflictingIdError`."""
        if job.func is None:
            raise JobDefinitionError("func: required")
        arguments = job_arguments(job)
        arguments["func"] = check_func(job.func, self.job_modules)
        trigger = build_trigger(job, self.timezone)
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

    async def add_job(self, job: JobDefinition) -> dict[str, Any]:
        """Raises `JobDefinitionError`, `ForbiddenJobFunction` or `ConflictingIdError`."""
        return job_to_dict(await asyncio.to_thread(self.add, job))

    async def get_jobs(self) -> list[dict[str, Any]]:
        jobs = await asyncio.to_thread(self.scheduler.get_jobs)
        return [job_to_dict(job) for job in jobs]

    async def get_job(self, job_id: str) -> dict[str, Any]:
        """Raises `JobLookupError`."""
        job = await asyncio.to_thread(self.scheduler.get_job, job_id)
        if job is None:
            raise JobLookupError(job_id)
        return job_to_dict(job)

    def _modify(self, job_id: str, job: JobDefinition) -> Job:
        changes = job_arguments(job)
        if "id" in changes and changes["id"] != job_id:
            raise JobDefinitionError("id: a job's id cannot be changed")
        changes.pop("id", None)
        changes.pop("replace_existing", None)
        if self.scheduler.get_job(job_id) is None:
            raise JobLookupError(job_id)
        if job.func is not None:
            changes["func"] = check_func(job.func, self.job_modules)
        trigger = build_trigger(job, self.timezone)  # None: the schedule is unchanged
        try:
            if trigger is not None:
                self.scheduler.reschedule_job(job_id, trigger=trigger)
            if changes:
                self.scheduler.modify_job(job_id, **changes)
        except (ValueError, TypeError) as error:  # APScheduler checks args against the function
            raise JobDefinitionError(f"args: {error}") from error
        # The leader may have removed the job meanwhile: a run it began before this change
        # found no next fire time under the old trigger (e.g. a date job that just ran).
        modified = self.scheduler.get_job(job_id)
        if modified is None:
            raise JobLookupError(job_id)
        return modified

    async def modify_job(self, job_id: str, job: JobDefinition) -> dict[str, Any]:
        """Change the fields `job` gives (PATCH); with a trigger or crontab it is rescheduled.
        Raises `JobLookupError`, `JobDefinitionError` or `ForbiddenJobFunction`."""
        return job_to_dict(await asyncio.to_thread(self._modify, job_id, job))

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
        return job_to_dict(job)

    async def runs(self, job_id: str) -> list[JobRun]:
        await self.get_job(job_id)
        return await self.history.runs(job_id)
