"""Fencing: each scheduled run is claimed in the database before it runs, so a tick runs once
even when two workers both believe they lead.

The lease (app.scheduler.leadership) lives in Redis, whose replication is asynchronous: after a
Sentinel failover the promoted replica may not have the last lease write, and a second worker
can take the lease while the first still holds it by its own clock. Each worker's executor
therefore inserts the run's identity, (job id, scheduled run time), into `scheduler_runs`,
whose primary key it is, and runs the job only if its insert won (`RunClaims.claim`); the loser
reports the tick as skipped (`RunFenced`). Claims older than `KEEP_SECONDS` are purged, at most
once per `PURGE_EVERY_SECONDS` per worker.
"""

from __future__ import annotations

import logging
import time
from datetime import UTC, datetime, timedelta

from sqlalchemy import delete
from sqlalchemy.exc import IntegrityError

from app.db import Database
from app.models import ScheduledRun

log = logging.getLogger(__name__)

KEEP_SECONDS = 86_400.0  # longer than any misfire grace: a claim is never needed again
PURGE_EVERY_SECONDS = 3_600.0


class RunFenced(Exception):
    """The run was claimed by another worker, which runs it."""


class RunClaims:
    """Claims of scheduled runs in the service's database.

    Arguments:
        database: the worker's database.
        worker: this worker's identity (host:pid), kept with each claim.
    """

    def __init__(self, database: Database, worker: str) -> None:
        self.database = database
        self.worker = worker
        self._purged_at: float | None = None  # the first claim purges (whatever the uptime)

    async def claim(self, job_id: str, run_time: datetime) -> bool:
        """True if this worker may run `job_id`'s run scheduled at `run_time` (aware), False if
        another worker claimed it. Raises the database's errors (the run is then not made)."""
        await self._purge_now_and_then()
        async with self.database.session() as session:
            session.add(ScheduledRun(job_id=job_id, run_time=run_time, worker=self.worker))
            try:
                await session.commit()
            except IntegrityError:
                await session.rollback()
                log.info("run of %s at %s claimed by another worker", job_id, run_time)
                return False
        return True

    async def _purge_now_and_then(self) -> None:
        now = time.monotonic()
        if self._purged_at is not None and now - self._purged_at < PURGE_EVERY_SECONDS:
            return
        self._purged_at = now
        cutoff = datetime.now(UTC) - timedelta(seconds=KEEP_SECONDS)
        async with self.database.session() as session:
            await session.execute(delete(ScheduledRun).where(ScheduledRun.run_time < cutoff))
            await session.commit()
