"""The in-memory presence backend (the embedded default)."""

from __future__ import annotations

import pytest

from app.presence.memory_store import MemoryPresenceStore


@pytest.fixture
def store(clock) -> MemoryPresenceStore:
    return MemoryPresenceStore(window_minutes=5, clock=clock)


async def test_marks_and_window_boundaries(store, clock) -> None:
    await store.mark("early")
    clock.advance(60)
    await store.mark("later")
    assert await store.online(5) == {"early": clock() - 60, "later": clock()}
    assert set(await store.online(1)) == {"later"}
    clock.advance(4 * 60 + 1)
    assert set(await store.online(5)) == {"later"}
    assert await store.last_seen("early") is None
    assert await store.last_seen("later") == clock() - 4 * 60 - 1


async def test_purge_drops_entries_older_than_the_window(store, clock) -> None:
    await store.mark("old")
    clock.advance(5 * 60 + 1)
    await store.mark("new")
    assert len(store) == 1  # mark() purged: its last purge was over a minute ago
    clock.advance(5 * 60 + 1)
    assert await store.purge() == 1 and len(store) == 0


async def test_refuses_windows_it_cannot_answer(store) -> None:
    with pytest.raises(ValueError, match="minutes"):
        await store.online(6)
