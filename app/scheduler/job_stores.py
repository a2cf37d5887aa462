"""APScheduler 3's job store for `SCHEDULER_JOBSTORE`: Redis (shared by every worker and
container), SQLAlchemy on a synchronous driver, or memory (this process; lost at restart)."""

from __future__ import annotations

from apscheduler.jobstores.base import BaseJobStore
from apscheduler.jobstores.memory import MemoryJobStore

from app.settings import Settings


def create_jobstore(settings: Settings) -> BaseJobStore:
    """The configured store. Its calls block: callers on the event loop run them in a thread."""
    kind = settings.effective_scheduler_jobstore
    if kind == "redis":
        from apscheduler.jobstores.redis import RedisJobStore
        from redis.backoff import NoBackoff
        from redis.connection import parse_url
        from redis.retry import Retry

        from app.redis_client import redis_options, sentinel_options

        prefix = settings.redis_key_prefix
        keys = {
            "jobs_key": f"{prefix}scheduler:jobs",
            "run_times_key": f"{prefix}scheduler:run_times",
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
            return RedisJobStore(**keys, connection_pool=master.connection_pool)
        assert settings.redis_url is not None  # Settings refuses redis without a topology
        return RedisJobStore(**keys, **sync_options, **parse_url(settings.redis_url))
    if kind == "sqlalchemy":
        from apscheduler.jobstores.sqlalchemy import SQLAlchemyJobStore

        return SQLAlchemyJobStore(
            url=settings.effective_scheduler_sqlalchemy_url, tablename="apscheduler_jobs"
        )
    return MemoryJobStore()
