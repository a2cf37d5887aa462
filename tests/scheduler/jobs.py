"""Job functions for the scheduler tests, registered like any application job."""

from app.scheduler.registry import job_function


@job_function
async def explode() -> None:
    raise RuntimeError("boom")
