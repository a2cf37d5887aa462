"""Job functions for the scheduler tests, registered like any application job."""

from app import state
from app.scheduler.registry import job_function

PREFIXES_SEEN: list[str] = []


@job_function
async def explode() -> None:
    raise RuntimeError("boom")


@job_function
async def note_key_prefix() -> None:
    """Record the REDIS_KEY_PREFIX of the app whose context the job runs in."""
    PREFIXES_SEEN.append(state.settings().redis_key_prefix)


TICKS_RUN: list[str] = []


@job_function
async def note_tick() -> None:
    """Count a run (the fencing test reads each app's run history for its scheduled time)."""
    TICKS_RUN.append(state.settings().redis_key_prefix)


@job_function
def note_tick_in_a_thread() -> None:
    """`note_tick` as a plain function (the `threadpool` executor runs it in a thread)."""
    TICKS_RUN.append(state.settings().redis_key_prefix)
