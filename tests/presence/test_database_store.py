"""The database presence backend: `users.last_seen`, throttled writes, wide windows."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from sqlalchemy import event, select

from app.db import Database
from app.models import User
from app.presence.database_store import DatabasePresenceStore
from tests.conftest import make_settings


@pytest.fixture
async def database(database_url):
    database = Database(make_settings(database_url))
    yield database
    await database.dispose()


@pytest.fixture
async def user_ids(database) -> list[str]:
    async with database.session() as session:
        users = [User(name=f"user{i}") for i in range(3)]
        session.add_all(users)
        await session.commit()
        return [user.id for user in users]


def count_updates(database: Database) -> list[str]:
    updates: list[str] = []

    def on_execute(_conn, _cursor, statement, *_args) -> None:
        if statement.lstrip().upper().startswith("UPDATE"):
            updates.append(statement)

    event.listen(database.engine.sync_engine, "before_cursor_execute", on_execute)
    return updates


async def test_mark_writes_last_seen(database, user_ids, clock) -> None:
    store = DatabasePresenceStore(database, max_window_minutes=4320, clock=clock)
    await store.mark(user_ids[0])
    async with database.session() as session:
        seen = await session.scalar(select(User.last_seen).where(User.id == user_ids[0]))
    assert seen == datetime.fromtimestamp(clock(), UTC)
    assert await store.last_seen(user_ids[0]) == clock()
    assert await store.last_seen(user_ids[1]) is None


async def test_writes_are_throttled_to_one_a_minute(database, user_ids, clock) -> None:
    store = DatabasePresenceStore(database, max_window_minutes=4320, clock=clock)
    updates = count_updates(database)
    for _ in range(5):
        await store.mark(user_ids[0])
        clock.advance(10)
    assert len(updates) == 1
    clock.advance(20)  # 70 s after the first write
    await store.mark(user_ids[0])
    assert len(updates) == 2
    assert await store.last_seen(user_ids[0]) == clock()


async def test_throttle_holds_across_workers(database, user_ids, clock) -> None:
    """Two workers each skip their own recent writes; the UPDATE's condition stops the other's."""
    first = DatabasePresenceStore(database, max_window_minutes=4320, clock=clock)
    second = DatabasePresenceStore(database, max_window_minutes=4320, clock=clock)
    await first.mark(user_ids[0])
    clock.advance(30)
    await second.mark(user_ids[0])  # runs an UPDATE that changes nothing: written 30 s ago
    assert await first.last_seen(user_ids[0]) == clock() - 30


async def test_wide_windows(database, user_ids, clock) -> None:
    store = DatabasePresenceStore(database, max_window_minutes=4320, clock=clock)
    await store.mark(user_ids[0])
    clock.advance(2 * 86400)  # two days later
    await store.mark(user_ids[1])
    assert set(await store.online(5)) == {user_ids[1]}
    assert set(await store.online(3 * 1440)) == {user_ids[0], user_ids[1]}  # "last 3 days"
    with pytest.raises(ValueError, match="minutes: must be from 1 to 4320"):
        await store.online(4321)


async def test_marking_an_unknown_user_writes_nothing(database, user_ids, clock) -> None:
    store = DatabasePresenceStore(database, max_window_minutes=4320, clock=clock)
    await store.mark("no-such-user")
    assert await store.online(5) == {}
