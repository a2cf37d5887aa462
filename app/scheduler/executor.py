"""Where a coroutine job runs: on the loop, in the serving app's context.

Jobs run outside requests, yet they use the app's resources (`app.state`). The scheduler is
started inside the app's lifespan, where the app context is pushed (Quart runs `while_serving`
in it): the executor keeps a copy of that `contextvars` context, and each job's task starts
from it. No module-level app reference (two apps in one process, as in tests, keep theirs).
"""

from __future__ import annotations

import contextvars
from typing import Any

from apscheduler.executors.asyncio import AsyncIOExecutor


class AppContextExecutor(AsyncIOExecutor):  # type: ignore[misc]
    """APScheduler's AsyncIOExecutor whose jobs start in `context` (set by `use_context`,
    before the scheduler starts). Jobs run in the thread pool executor get no app context."""

    def __init__(self) -> None:
        super().__init__()
        self.context: contextvars.Context | None = None

    def use_context(self, context: contextvars.Context) -> None:
        self.context = context

    def _do_submit_job(self, job: Any, run_times: Any) -> None:
        if self.context is None:
            raise RuntimeError("AppContextExecutor: use_context() before jobs run")
        # The job's task copies the context current when it is created: this one.
        self.context.run(super()._do_submit_job, job, run_times)
