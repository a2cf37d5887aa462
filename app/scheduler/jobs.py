"""Built-in job functions (all registered with `@job_function`). They use the resources the
scheduler was given (app.scheduler.job_context), never `app.state`, which sits above the
scheduler; a coroutine job runs on the app's loop, a plain one in the scheduler's threads."""

from __future__ import annotations

import logging
from datetime import UTC, datetime

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError

from app.models import OnlineSnapshot
from app.scheduler import job_context
from app.scheduler.registry import job_function

log = logging.getLogger(__name__)


@job_function
def print_test(*args: object) -> str:
    """The original's example job: says it is working, with the time. A plain function: it runs
    in the thread pool."""
    message = f"I am working: {datetime.now(UTC):%Y-%m-%d %H:%M:%S} {' '.join(map(str, args))}"
    log.info(message.strip())
    return message


@job_function
async def purge_presence() -> int:
    """Drop presence entries older than the window (the memory backend keeps them otherwise)."""
    return await job_context.presence().purge()


@job_function
async def snapshot_online_count() -> int:
    """Store how many users are online now, once per minute (the minute is the key, so a
    second run for the same minute changes nothing)."""
    store = job_context.presence()
    window = min(job_context.job_resources().settings.online_last_minutes, store.max_window_minutes)
    count = len(await store.online(window))
    taken_at = datetime.now(UTC).replace(second=0, microsecond=0)
    async with job_context.database().session() as session:
        session.add(OnlineSnapshot(taken_at=taken_at, online_count=count))
        try:
            await session.commit()
        except IntegrityError:
            await session.rollback()
    return count


@job_function
async def count_snapshots() -> int:
    """How many snapshots are stored (a harmless job for trying the API)."""
    async with job_context.database().session() as session:
        return await session.scalar(select(func.count()).select_from(OnlineSnapshot)) or 0
