"""APScheduler 3's job store for `SCHEDULER_JOBSTORE`: Redis (shared by every worker and
container), SQLAlchemy on a synchronous driver, or memory (this process; lost at restart).

Each store also keeps a **version** per job, the scheduler API's strong ETag (RFC 9110 §8.8.3):
every write of a job (the API's changes, and the scheduler's own update of its next run time)
raises it in the same transaction as the write. A job added starts at the store's clock in
microseconds, so a job deleted and added again under its id never repeats an old version.

A write can be conditional: inside `required_version(precondition)` the first update or
removal of a job checks the precondition (If-Match) atomically with the write, and raises
`PreconditionFailedError` (412) when the job's version is not among it.
"""

from __future__ import annotations

import pickle
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any, Protocol

from apscheduler.job import Job
from apscheduler.jobstores.base import BaseJobStore, ConflictingIdError, JobLookupError
from apscheduler.jobstores.memory import MemoryJobStore
from apscheduler.jobstores.redis import RedisJobStore
from apscheduler.jobstores.sqlalchemy import SQLAlchemyJobStore
from apscheduler.util import datetime_to_utc_timestamp
from redis.client import Pipeline
from redis.exceptions import WatchError
from sqlalchemy import BigInteger, Column, Connection, Table, Unicode, select
from sqlalchemy.exc import IntegrityError

from app.services.versions import Precondition
from app.settings import Settings

_WRITE_PRECONDITION: ContextVar[Precondition | None] = ContextVar(
    "job_write_precondition", default=None
)


@contextmanager
def required_version(precondition: Precondition | None) -> Iterator[None]:
    """The first job update or removal inside (this thread's context) checks `precondition`.
    Use it in the thread that calls the scheduler (the job stores are synchronous)."""
    token = _WRITE_PRECONDITION.set(precondition)
    try:
        yield
    finally:
        _WRITE_PRECONDITION.reset(token)


def _take_precondition() -> Precondition | None:
    precondition = _WRITE_PRECONDITION.get()
    if precondition is not None:
        _WRITE_PRECONDITION.set(None)  # later writes of the same change are unconditional
    return precondition


def _first_version() -> int:
    return time.time_ns() // 1_000


class VersionedJobStore(Protocol):
    def lookup_versioned(self, job_id: str) -> tuple[Job, int] | None:
        """The job and its version, read together; None when there is no such job."""
        ...


class VersionedMemoryJobStore(MemoryJobStore):  # type: ignore[misc]
    """The memory store with a version per job (this process only)."""

    def __init__(self) -> None:
        super().__init__()
        self._versions: dict[str, int] = {}
        self._lock = threading.RLock()

    def lookup_job(self, job_id: str) -> Job | None:
        """A copy: APScheduler changes the job it looked up before it calls `update_job`, and
        a change that fails its precondition must leave the stored job as it was."""
        job = super().lookup_job(job_id)
        if job is None:
            return None
        try:
            state = job.__getstate__()
        except ValueError:  # a job whose function has no importable reference: no copy
            return job
        copy = Job.__new__(Job)
        copy.__setstate__(state)
        copy._scheduler = job._scheduler
        copy._jobstore_alias = job._jobstore_alias
        return copy

    def lookup_versioned(self, job_id: str) -> tuple[Job, int] | None:
        with self._lock:
            job = self.lookup_job(job_id)
            return None if job is None else (job, self._versions.get(job_id, 0))

    def add_job(self, job: Job) -> None:
        with self._lock:
            super().add_job(job)
            self._versions[job.id] = _first_version()

    def update_job(self, job: Job) -> None:
        with self._lock:
            precondition = _take_precondition()
            if precondition is not None and job.id in self._versions:
                precondition.check(self._versions[job.id], "job")
            super().update_job(job)
            self._versions[job.id] = self._versions.get(job.id, 0) + 1

    def remove_job(self, job_id: str) -> None:
        with self._lock:
            precondition = _take_precondition()
            if precondition is not None and job_id in self._versions:
                precondition.check(self._versions[job_id], "job")
            super().remove_job(job_id)
            self._versions.pop(job_id, None)

    def remove_all_jobs(self) -> None:
        with self._lock:
            super().remove_all_jobs()
            self._versions.clear()


class VersionedRedisJobStore(RedisJobStore):  # type: ignore[misc]
    """APScheduler's Redis store; the versions are a hash beside the jobs' (`versions_key`),
    written in the jobs' MULTI. A conditional write WATCHes the versions and retries when
    another job's write got in between."""

    def __init__(self, *, versions_key: str, **options: Any) -> None:
        super().__init__(**options)
        self.versions_key = versions_key

    def lookup_versioned(self, job_id: str) -> tuple[Job, int] | None:
        with self.redis.pipeline() as pipe:
            pipe.hget(self.jobs_key, job_id)
            pipe.hget(self.versions_key, job_id)
            state, version = pipe.execute()
        return None if not state else (self._reconstitute_job(state), int(version or 0))

    def _queue_job(self, pipe: Pipeline, job: Job) -> None:
        pipe.hset(self.jobs_key, job.id, pickle.dumps(job.__getstate__(), self.pickle_protocol))
        if job.next_run_time:
            pipe.zadd(self.run_times_key, {job.id: datetime_to_utc_timestamp(job.next_run_time)})
        else:
            pipe.zrem(self.run_times_key, job.id)

    def add_job(self, job: Job) -> None:
        def queue(pipe: Pipeline) -> None:
            self._queue_job(pipe, job)
            pipe.hset(self.versions_key, job.id, _first_version())

        self._write(job.id, queue, must_exist=False)

    def update_job(self, job: Job) -> None:
        def queue(pipe: Pipeline) -> None:
            self._queue_job(pipe, job)
            pipe.hincrby(self.versions_key, job.id, 1)

        self._write(job.id, queue, must_exist=True)

    def remove_job(self, job_id: str) -> None:
        def queue(pipe: Pipeline) -> None:
            pipe.hdel(self.jobs_key, job_id)
            pipe.zrem(self.run_times_key, job_id)
            pipe.hdel(self.versions_key, job_id)

        self._write(job_id, queue, must_exist=True)

    def remove_all_jobs(self) -> None:
        with self.redis.pipeline() as pipe:
            pipe.delete(self.jobs_key, self.run_times_key, self.versions_key)
            pipe.execute()

    def _write(self, job_id: str, queue: Callable[[Pipeline], None], *, must_exist: bool) -> None:
        """One MULTI, after checking under WATCH that the job exists (or, for an add, does
        not) and meets the precondition."""
        precondition = _take_precondition()
        with self.redis.pipeline() as pipe:
            while True:
                try:
                    pipe.watch(self.jobs_key, self.versions_key)
                    exists = pipe.hexists(self.jobs_key, job_id)
                    if must_exist and not exists:
                        raise JobLookupError(job_id)
                    if not must_exist and exists:
                        raise ConflictingIdError(job_id)
                    if precondition is not None:
                        precondition.check(int(pipe.hget(self.versions_key, job_id) or 0), "job")
                    pipe.multi()
                    queue(pipe)
                    pipe.execute()
                    return
                except WatchError:
                    continue


class VersionedSQLAlchemyJobStore(SQLAlchemyJobStore):  # type: ignore[misc]
    """APScheduler's SQLAlchemy store; the versions are a table of their own
    (`<tablename>_versions`, created beside APScheduler's at start, so APScheduler's table is
    never altered), written in the job's transaction. A job stored before that table has
    version 0 until its next write."""

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        self.versions_t = Table(
            f"{self.jobs_t.name}_versions",
            self.jobs_t.metadata,
            Column("id", Unicode(191), primary_key=True),
            Column("version", BigInteger, nullable=False),
            schema=self.jobs_t.schema,
        )

    def start(self, scheduler: Any, alias: str) -> None:
        super().start(scheduler, alias)
        self.versions_t.create(self.engine, checkfirst=True)

    def lookup_versioned(self, job_id: str) -> tuple[Job, int] | None:
        query = (
            select(self.jobs_t.c.job_state, self.versions_t.c.version)
            .outerjoin(self.versions_t, self.versions_t.c.id == self.jobs_t.c.id)
            .where(self.jobs_t.c.id == job_id)
        )
        with self.engine.begin() as connection:
            row = connection.execute(query).first()
        return None if row is None else (self._reconstitute_job(row[0]), int(row[1] or 0))

    def add_job(self, job: Job) -> None:
        with self.engine.begin() as connection:
            try:
                connection.execute(
                    self.jobs_t.insert().values(
                        id=job.id,
                        next_run_time=datetime_to_utc_timestamp(job.next_run_time),
                        job_state=pickle.dumps(job.__getstate__(), self.pickle_protocol),
                    )
                )
            except IntegrityError:
                raise ConflictingIdError(job.id) from None
            connection.execute(self.versions_t.delete().where(self.versions_t.c.id == job.id))
            connection.execute(self.versions_t.insert().values(id=job.id, version=_first_version()))

    def update_job(self, job: Job) -> None:
        precondition = _take_precondition()
        with self.engine.begin() as connection:
            self._bump(connection, job.id, precondition)
            result = connection.execute(
                self.jobs_t.update()
                .values(
                    next_run_time=datetime_to_utc_timestamp(job.next_run_time),
                    job_state=pickle.dumps(job.__getstate__(), self.pickle_protocol),
                )
                .where(self.jobs_t.c.id == job.id)
            )
            if result.rowcount == 0:
                raise JobLookupError(job.id)

    def remove_job(self, job_id: str) -> None:
        precondition = _take_precondition()
        with self.engine.begin() as connection:
            if precondition is not None:
                self._bump(connection, job_id, precondition)
            connection.execute(self.versions_t.delete().where(self.versions_t.c.id == job_id))
            result = connection.execute(self.jobs_t.delete().where(self.jobs_t.c.id == job_id))
            if result.rowcount == 0:
                raise JobLookupError(job_id)

    def remove_all_jobs(self) -> None:
        with self.engine.begin() as connection:
            connection.execute(self.versions_t.delete())
            connection.execute(self.jobs_t.delete())

    def _bump(self, connection: Connection, job_id: str, precondition: Precondition | None) -> None:
        """Raise the job's version by one if it meets `precondition` (else 412): one UPDATE
        that names the versions it may replace, so of concurrent writers one wins."""
        versions = self.versions_t.c
        bump = (
            self.versions_t.update()
            .values(version=versions.version + 1)
            .where(versions.id == job_id)
        )
        if precondition is not None and precondition.versions is not None:
            bump = bump.where(versions.version.in_(precondition.versions))
        if connection.execute(bump).rowcount == 1:
            return
        current = connection.scalar(select(versions.version).where(versions.id == job_id))
        if precondition is not None:
            precondition.check(0 if current is None else current, "job")
        if current is None:  # a job stored before the versions table (or no job: a 404 next)
            connection.execute(self.versions_t.insert().values(id=job_id, version=1))


def create_jobstore(settings: Settings) -> BaseJobStore:
    """The configured store, with versions (`VersionedJobStore`). Its calls block: callers on
    the event loop run them in a thread."""
    kind = settings.effective_scheduler_jobstore
    if kind == "redis":
        from redis.backoff import NoBackoff
        from redis.connection import parse_url
        from redis.retry import Retry

        from app.redis_client import redis_options, sentinel_options

        prefix = settings.redis_key_prefix
        keys = {
            "jobs_key": f"{prefix}scheduler:jobs",
            "run_times_key": f"{prefix}scheduler:run_times",
            "versions_key": f"{prefix}scheduler:versions",
        }
        # The synchronous client gets the async client's bounds (REDIS_TIMEOUT for connect and
        # reads) and no retries.
        sync_options = {**redis_options(settings), "retry": Retry(NoBackoff(), 0)}
        if settings.redis_sentinels:
            from redis.sentinel import Sentinel

            # The master the sentinels name, asked again after each failed connection.
            sentinels = Sentinel(
                settings.redis_sentinel_addresses,
                sentinel_kwargs={**sentinel_options(settings), "retry": Retry(NoBackoff(), 0)},
            )
            master = sentinels.master_for(
                settings.redis_sentinel_master,
                password=settings.redis_password,
                db=settings.redis_db,
                **sync_options,
            )
            return VersionedRedisJobStore(**keys, connection_pool=master.connection_pool)
        assert settings.redis_url is not None  # Settings refuses redis without a topology
        return VersionedRedisJobStore(**keys, **sync_options, **parse_url(settings.redis_url))
    if kind == "sqlalchemy":
        return VersionedSQLAlchemyJobStore(
            url=settings.effective_scheduler_sqlalchemy_url, tablename="apscheduler_jobs"
        )
    return VersionedMemoryJobStore()
