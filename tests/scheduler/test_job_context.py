"""app/scheduler/job_context.py: a built-in job reads the resources its scheduler was given."""

from __future__ import annotations

import contextvars

import pytest

from app.presence.memory_store import MemoryPresenceStore
from app.scheduler import job_context
from app.scheduler.job_context import JOB_RESOURCES, JobResources
from tests.conftest import make_settings


def test_outside_a_run_there_are_no_resources() -> None:
    with pytest.raises(RuntimeError, match="only a job run by the scheduler"):
        contextvars.Context().run(job_context.job_resources)


def test_a_run_reads_what_its_scheduler_was_given_and_names_what_is_missing() -> None:
    settings = make_settings("sqlite+aiosqlite://")
    store = MemoryPresenceStore(window_minutes=5)

    def in_a_run() -> None:
        JOB_RESOURCES.set(JobResources(settings, None, store))
        assert job_context.presence() is store
        assert job_context.job_resources().settings is settings
        with pytest.raises(RuntimeError, match="needs the database"):
            job_context.database()

    contextvars.Context().run(in_a_run)
