"""What the built-in job functions work with, given rather than reached for.

The lifespan gives the scheduler the worker's settings, database and presence store
(`SchedulerService`); each run starts in a context where `job_resources()` returns them
(app.scheduler.executor). The built-in jobs (app.scheduler.jobs) read them there, so the
scheduler package never imports `app.state`, which sits above it (docs/design.md, Layers).
A deployment's own job modules may still use `app.state`: jobs run in the app's context.
"""

from __future__ import annotations

from contextvars import ContextVar
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from app.db import Database
    from app.presence.store import PresenceStore
    from app.settings import Settings


@dataclass(frozen=True, slots=True)
class JobResources:
    """The worker's resources a job may use; None where this scheduler was given none."""

    settings: Settings
    database: Database | None
    presence: PresenceStore | None


JOB_RESOURCES: ContextVar[JobResources] = ContextVar("job_resources")


def job_resources() -> JobResources:
    """The resources of the scheduler running this job. Raises `RuntimeError` outside a run."""
    try:
        return JOB_RESOURCES.get()
    except LookupError:
        raise RuntimeError("job_resources(): only a job run by the scheduler has them") from None


def database() -> Database:
    """The worker's database. Raises `RuntimeError` when the scheduler was given none."""
    found = job_resources().database
    if found is None:
        raise RuntimeError("this job needs the database, and the scheduler was given none")
    return found


def presence() -> PresenceStore:
    """The worker's presence store. Raises `RuntimeError` when the scheduler was given none."""
    found = job_resources().presence
    if found is None:
        raise RuntimeError("this job needs the presence store, and the scheduler was given none")
    return found
