"""The floor of a Quart route on the service's Hypercorn settings: the same JSON as
GET /api/v1/user/<id> and /healthz with nothing behind it (no hooks, no database), and the same
user read by one SQLAlchemy Core query on aiomysql (`/db/user/<id>`, when BENCH_DATABASE_URL is
set): the floor of any route that reads the database once. It reads as the service does: an
autocommit pool that ends a read without a ROLLBACK (app.db), one round trip per query."""

import os

from quart import Quart
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

app = Quart(__name__)
USER = {"id": "0190a8e4-6f1c-7d9e-a7d5-3f0c2b1a9e11", "name": "user0", "role": 0}
QUERY = text("SELECT id, name, role FROM users WHERE id = :id")
engines: list[AsyncEngine] = []


@app.before_serving
async def connect() -> None:
    if os.environ.get("BENCH_DATABASE_URL"):
        from app.db import _rollback_only_in_a_transaction

        engine = create_async_engine(
            os.environ["BENCH_DATABASE_URL"],
            pool_size=10,
            max_overflow=0,  # the benchmark's servers share MariaDB's 151 connections
            isolation_level="AUTOCOMMIT",
            pool_reset_on_return=None,
        )
        _rollback_only_in_a_transaction(engine)
        engines.append(engine)


@app.get("/api/v1/user/<user_id>")
async def get_user(user_id: str) -> dict[str, object]:
    return {"code": 0, "data": {**USER, "id": user_id}, "status": "succeed"}


@app.get("/db/user/<user_id>")
async def get_user_from_the_database(user_id: str) -> tuple[dict[str, object], int]:
    async with engines[0].connect() as connection:
        row = (await connection.execute(QUERY, {"id": user_id})).first()
    if row is None:
        return {"code": 404, "msg": "User's id does not exist.", "status": "failed"}, 404
    data = {"id": row.id, "name": row.name, "role": row.role}
    return {"code": 0, "data": data, "status": "succeed"}, 200


@app.get("/healthz")
async def healthz() -> dict[str, str]:
    return {"status": "ok"}
