"""Presence across app instances sharing Redis, and a failing store never failing a request."""

from __future__ import annotations

import pytest

from app.presence import PresenceRecorder
from app.presence.memory_store import MemoryPresenceStore
from app.state import app_state
from tests.auth_helpers import basic, make_user
from tests.helpers import ok


@pytest.mark.parametrize("database_url", ["mysql"], indirect=True)
async def test_presence_is_shared_by_workers_through_redis(serve_app, redis_url) -> None:
    async with serve_app(redis_url=redis_url) as first, serve_app(redis_url=redis_url) as second:
        await make_user(first, "alice", password="alice-password")
        await ok(
            await first.test_client().get("/api/v1/tag", headers=basic("alice", "alice-password"))
        )
        online = await ok(await second.test_client().get("/api/v1/online"))
        assert [user["name"] for user in online["users"]] == ["alice"]


async def test_a_stopped_redis_does_not_fail_authenticated_requests(serve_app) -> None:
    # Nothing listens on loopback port 1: every Redis call fails.
    async with serve_app(redis_url="redis://127.0.0.1:1/0", redis_timeout=0.5) as app:
        await make_user(app, "alice", password="alice-password")
        client = app.test_client()
        for _ in range(3):
            response = await client.get("/api/v1/me", headers=basic("alice", "alice-password"))
            assert (await ok(response))["name"] == "alice"
        recorder: PresenceRecorder = app_state(app).presence
        assert recorder.failures == 1 and recorder.skipped == 2  # backed off after one failure


class BrokenStore(MemoryPresenceStore):
    async def mark(self, user_id: str) -> None:
        raise ConnectionError("store is down")


async def test_recorder_backs_off_then_retries(clock) -> None:
    store = BrokenStore(window_minutes=5, clock=clock)
    recorder = PresenceRecorder(store, backoff_seconds=5, clock=clock)
    await recorder.mark("u1")
    await recorder.mark("u1")
    assert (recorder.failures, recorder.skipped) == (1, 1)
    clock.advance(5)
    await recorder.mark("u1")
    assert (recorder.failures, recorder.skipped) == (2, 1)


class CountingStore(MemoryPresenceStore):
    def __init__(self, **options) -> None:
        super().__init__(**options)
        self.marks = 0

    async def mark(self, user_id: str) -> None:
        self.marks += 1
        await super().mark(user_id)


async def test_a_user_is_marked_once_a_minute_per_worker(clock) -> None:
    """Authenticated requests of one minute cost one store round trip, not one each."""
    store = CountingStore(window_minutes=5, clock=clock)
    recorder = PresenceRecorder(store, clock=clock)
    for _ in range(10):
        await recorder.mark("u1")
    await recorder.mark("u2")
    assert (store.marks, recorder.throttled) == (2, 9)
    clock.advance(59)  # still the same minute (the clock starts on a minute boundary)
    await recorder.mark("u1")
    assert store.marks == 2
    clock.advance(1)  # a new minute: marked again, so the per-minute set has the user
    await recorder.mark("u1")
    assert store.marks == 3
    assert set(await store.online(1)) == {"u1"}
