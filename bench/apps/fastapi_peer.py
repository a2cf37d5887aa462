"""The FastAPI peer: `GET /api/v1/user/{user_id}` in the service's envelope, read with one
SQLAlchemy Core query on the shared read engine (bench/apps/peer_common.py), written as the
FastAPI tutorial writes an async route with a lifespan. Served by Uvicorn or Granian."""

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from fastapi.responses import JSONResponse

from bench.apps.peer_common import NOT_FOUND, QUERY, envelope, read_engine

engines = []


@asynccontextmanager
async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
    engines.append(read_engine())
    yield
    await engines.pop().dispose()


app = FastAPI(lifespan=lifespan)


@app.get("/api/v1/user/{user_id}")
async def get_user(user_id: str):  # type: ignore[no-untyped-def]
    async with engines[0].connect() as connection:
        row = (await connection.execute(QUERY, {"id": user_id})).first()
    if row is None:
        return JSONResponse(NOT_FOUND, status_code=404)
    return envelope(row)


@app.get("/nodb/user/{user_id}")
async def get_user_without_the_database(user_id: str):  # type: ignore[no-untyped-def]
    """The same answer with nothing behind it: the framework and server's own cost."""
    return {"code": 0, "data": {"id": user_id, "name": "user0", "role": 0}, "status": "succeed"}
