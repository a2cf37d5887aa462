"""What every REST peer of `python -m bench --suite peers` shares: the query and the read
engine, set up as the service's read pool is (autocommit, no ROLLBACK on return, one round trip
per read, `DB_POOL_SIZE` 8 connections per worker), so the peers differ only in their framework
and server. The database comes from BENCH_DATABASE_URL (aiomysql)."""

import os

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

QUERY = text("SELECT id, name, role FROM users WHERE id = :id")
NOT_FOUND = {"code": 404, "msg": "User's id does not exist.", "status": "failed"}


def read_engine() -> AsyncEngine:
    from app.db import _rollback_only_in_a_transaction

    engine = create_async_engine(
        os.environ["BENCH_DATABASE_URL"],
        pool_size=8,
        max_overflow=0,  # the benchmark's servers share MariaDB's 151 connections
        isolation_level="AUTOCOMMIT",
        pool_reset_on_return=None,
    )
    _rollback_only_in_a_transaction(engine)
    return engine


def envelope(row: object) -> dict[str, object]:
    return {
        "code": 0,
        "data": {"id": row.id, "name": row.name, "role": row.role},  # type: ignore[attr-defined]
        "status": "succeed",
    }
