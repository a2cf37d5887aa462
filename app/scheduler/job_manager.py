"""Job CRUD for the scheduler API, in Flask-APScheduler's job format (app.scheduler.serialize).

APScheduler 3's job stores are synchronous, so every store call runs in a worker thread
(`asyncio.to_thread`), never on the event loop.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import time
from datetime import UTC, datetime
from typing import Any

from apscheduler.job import Job
from apscheduler.jobstores.base import ConflictingIdError, JobLookupError
from apscheduler.schedulers.asyncio import AsyncIOScheduler
from apscheduler.triggers.base import BaseTrigger
from apscheduler.util import ref_to_obj

from app.metrics import SCHEDULER_RUNS
from app.scheduler.definitions import IntervalJob, JobDefinition, job_arguments
from app.scheduler.guard import RefusedJobs, trigger_violation, violation
from app.scheduler.history import JobRun, Outcome, RunHistory
from app.scheduler.registry import check_func
from app.scheduler.serialize import JobDefinitionError, build_trigger, job_to_dict

log = logging.getLogger(__name__)


def _now() -> datetime:
    return datetime.now(UTC)


def _with_refusal(job: dict[str, Any], reason: str | None) -> dict[str, Any]:
    if reason is not None:
        job["refused"] = reason
    return job


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
        min_interval: float = 1.0,
        refused: RefusedJobs | None = None,
    ) -> None:
        self.scheduler = scheduler
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
            if job.next_run_time is not None:
                await asyncio.to_thread(self.scheduler.pause_job, job.id)
            await self.refused.mark(job.id, reason)

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

    async def add_job(self, job: JobDefinition) -> dict[str, Any]:
        """Raises `JobDefinitionError`, `ForbiddenJobFunction` or `ConflictingIdError`."""
        added = await asyncio.to_thread(self.add, job)
        await self.refused.clear(added.id)  # a job of that id refused before is gone
        return job_to_dict(added)

    async def get_jobs(self) -> list[dict[str, Any]]:
        """Every job; a refused one carries `"refused": <reason>` (and is paused)."""
        jobs = await asyncio.to_thread(self.scheduler.get_jobs)
        refused = await self.refused.all()
        return [_with_refusal(job_to_dict(job), refused.get(job.id)) for job in jobs]

    async def get_job(self, job_id: str) -> dict[str, Any]:
        """Raises `JobLookupError`."""
        job = await asyncio.to_thread(self.scheduler.get_job, job_id)
        if job is None:
            raise JobLookupError(job_id)
        return _with_refusal(job_to_dict(job), (await self.refused.all()).get(job_id))

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
        trigger = self._checked_trigger(job)  # None: the schedule is unchanged
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
        Raises `JobLookupError`, `JobDefinitionError` or `ForbiddenJobFunction`. A refused
        job whose new trigger may run is no longer refused (it stays paused until resumed)."""
        modified = await asyncio.to_thread(self._modify, job_id, job)
        if violation(modified, self.min_interval) is None:
            await self.refused.clear(job_id)
        return _with_refusal(job_to_dict(modified), (await self.refused.all()).get(job_id))

    async def remove_job(self, job_id: str) -> None:
        await asyncio.to_thread(self.scheduler.remove_job, job_id)
        await self.history.forget(job_id)
        await self.refused.clear(job_id)

    async def pause_job(self, job_id: str) -> dict[str, Any]:
        return job_to_dict(await asyncio.to_thread(self.scheduler.pause_job, job_id))

    async def resume_job(self, job_id: str) -> dict[str, Any]:
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
