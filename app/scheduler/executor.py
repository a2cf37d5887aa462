"""Where a job runs: on the loop, in the serving app's context, once its run is claimed.

Jobs run outside requests, yet they use the app's resources (the built-in ones through
app.scheduler.job_context, a deployment's own through `app.state` as well). The scheduler is
started inside the app's lifespan, where the app context is pushed (Quart runs `while_serving`
in it): the executor keeps a copy of that `contextvars` context, and each job's task starts
from it. No module-level app reference (two apps in one process, as in tests, keep theirs).

Before a scheduled run, the executor claims it (app.scheduler.fencing): a run another worker
claimed is reported as skipped (`RunFenced`), one that could not be claimed (the database
failed) as an error; neither runs.
"""

from __future__ import annotations

import concurrent.futures
import contextvars
import functools
import sys
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Any

from apscheduler.events import EVENT_JOB_ERROR, EVENT_JOB_MAX_INSTANCES, JobExecutionEvent
from apscheduler.executors.asyncio import AsyncIOExecutor
from apscheduler.executors.base import run_coroutine_job, run_job
from apscheduler.util import iscoroutinefunction_partial

from app.scheduler.fencing import RunFenced

Claim = Callable[[str, datetime], Awaitable[bool]]


async def _always_claimed(_job_id: str, _run_time: datetime) -> bool:
    return True


class AppContextExecutor(AsyncIOExecutor):  # type: ignore[misc]
    """APScheduler's AsyncIOExecutor whose jobs start in `context` (set by `use_context`,
    before the scheduler starts) and run only once `claim(job id, run time)` says so (set by
    `use_claims`; without it every run is made).

    Coroutine functions run on the loop; plain functions in `thread_pool` (None: the loop's
    default executor), in a copy of the app's context as well. The scheduler's `threadpool`
    executor is one of these with a pool of `SCHEDULER_THREAD_POOL_SIZE` threads, so its runs
    are claimed too: with APScheduler's own ThreadPoolExecutor they were not, and such a job
    could run once per worker that leads.
    """

    def __init__(self, thread_pool: concurrent.futures.ThreadPoolExecutor | None = None) -> None:
        super().__init__()
        self.context: contextvars.Context | None = None
        self.claim: Claim | None = None
        self.thread_pool = thread_pool

    def shutdown(self, wait: bool = True) -> None:
        super().shutdown(wait)
        if self.thread_pool is not None:
            self.thread_pool.shutdown(wait=False)

    def use_context(self, context: contextvars.Context) -> None:
        self.context = context

    def use_claims(self, claim: Claim) -> None:
        self.claim = claim

    def _do_submit_job(self, job: Any, run_times: list[datetime]) -> None:
        if self.context is None:
            raise RuntimeError("AppContextExecutor: use_context() before jobs run")
        # The job's task copies the context current when it is created: this one.
        # Unclaimed (no database: tests of the scheduler alone), every run is made.
        claim = self.claim or _always_claimed
        self.context.run(self._submit_claimed, job, run_times, claim)

    def _submit_claimed(self, job: Any, run_times: list[datetime], claim: Claim) -> None:
        """AsyncIOExecutor._do_submit_job (APScheduler 3.11), with each run claimed first."""

        def callback(future: Any) -> None:
            self._pending_futures.discard(future)
            try:
                events = future.result()
            except BaseException:
                self._run_job_error(job.id, *sys.exc_info()[1:])
            else:
                self._run_job_success(job.id, events)

        future = self._eventloop.create_task(self._run_claimed(job, run_times, claim))
        future.add_done_callback(callback)
        self._pending_futures.add(future)

    async def _run_claimed(
        self, job: Any, run_times: list[datetime], claim: Claim
    ) -> list[JobExecutionEvent]:
        alias = job._jobstore_alias
        events: list[JobExecutionEvent] = []
        claimed = []
        for run_time in run_times:
            try:
                won = await claim(job.id, run_time)
            except Exception as error:  # no claim, no run
                events.append(
                    JobExecutionEvent(EVENT_JOB_ERROR, job.id, alias, run_time, exception=error)
                )
                continue
            if won:
                claimed.append(run_time)
            else:
                fenced = RunFenced("claimed by another worker, which runs it")
                events.append(
                    JobExecutionEvent(
                        EVENT_JOB_MAX_INSTANCES, job.id, alias, run_time, exception=fenced
                    )
                )
        if claimed:
            if iscoroutinefunction_partial(job.func):
                ran = await run_coroutine_job(job, alias, claimed, self._logger.name)
            else:
                # In the thread too, the job sees the app's context (a copy of this task's).
                in_context = functools.partial(
                    contextvars.copy_context().run, run_job, job, alias, claimed, self._logger.name
                )
                ran = await self._eventloop.run_in_executor(self.thread_pool, in_context)
            events.extend(ran)
        return events
