"""The rule for reads (docs/design.md, "Reads in one greenlet"): a GET of one row's own columns
is one statement on the read engine (autocommit: no BEGIN, no ROLLBACK) and nothing on the
units-of-work engine; a GET that loads relationships uses a session. On MariaDB, where the two
engines differ."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest
from sqlalchemy import event

from app.state import app_state
from tests.conftest import QueryCounter, _empty_all_tables


@pytest.fixture
def database_url(mysql_url: str) -> str:
    asyncio.run(_empty_all_tables(mysql_url))
    return mysql_url


@pytest.fixture
def counters(app) -> Iterator[tuple[QueryCounter, QueryCounter]]:
    database = app_state(app).database
    units, reads = QueryCounter(), QueryCounter()
    listening = [(database.engine.sync_engine, units), (database.read_engine.sync_engine, reads)]
    for engine, counter in listening:
        event.listen(engine, "before_cursor_execute", counter)
    yield units, reads
    for engine, counter in listening:
        event.remove(engine, "before_cursor_execute", counter)


async def test_a_get_of_one_row_is_one_statement_on_the_read_engine(client, counters) -> None:
    units, reads = counters
    user = await (await client.post("/api/v1/user", json={"name": "ann", "role": 0})).get_json()
    tag = await (await client.post("/api/v1/tag", json={"name": "news"})).get_json()
    assert app_state(client.app).database.read_engine is not app_state(client.app).database.engine
    for path in (f"/api/v1/user/{user['data']['id']}", f"/api/v1/tag/{tag['data']['id']}"):
        units.reset()
        reads.reset()
        response = await client.get(path)
        assert response.status_code == 200 and response.headers["ETag"] == '"1"'
        assert units.statements == [], path
        assert len(reads.statements) == 1 and reads.statements[0].lstrip().startswith("SELECT")


async def test_a_get_with_relationships_uses_a_session(client, counters) -> None:
    units, reads = counters
    user = await (await client.post("/api/v1/user", json={"name": "bob", "role": 0})).get_json()
    units.reset()
    reads.reset()
    response = await client.get(f"/api/v1/user/{user['data']['id']}/blogs")
    assert response.status_code == 200
    assert reads.statements == [] and len(units.statements) >= 2  # the user, then its blogs
