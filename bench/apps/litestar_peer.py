"""The Litestar peer: the same route, envelope and read engine as the FastAPI peer
(bench/apps/peer_common.py), written as Litestar's docs write an async handler. Served by
Uvicorn."""

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from litestar import Litestar, Response, get

from bench.apps.peer_common import NOT_FOUND, QUERY, envelope, read_engine

engines = []


@asynccontextmanager
async def lifespan(_app: Litestar) -> AsyncIterator[None]:
    engines.append(read_engine())
    yield
    await engines.pop().dispose()


@get("/api/v1/user/{user_id:str}")
async def get_user(user_id: str) -> Response[dict[str, object]]:
    async with engines[0].connect() as connection:
        row = (await connection.execute(QUERY, {"id": user_id})).first()
    if row is None:
        return Response(NOT_FOUND, status_code=404)
    return Response(envelope(row))


app = Litestar([get_user], lifespan=[lifespan])
