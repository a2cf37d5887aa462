"""The Redis presence backend: the recipe's keys, TTLs, window boundaries, one round trip."""

from __future__ import annotations

import pytest
from redis.asyncio import Redis

from app.presence.redis_store import RedisPresenceStore
from tests.conftest import open_cluster_client
from tests.waiting import eventually


@pytest.fixture(params=["server", "cluster"])
async def redis(request):
    """The store's Redis: one server, or a Redis Cluster (the `{presence}` hash tag keeps every
    multi-key command in one slot)."""
    if request.param == "cluster":
        client = await open_cluster_client(request.getfixturevalue("redis_cluster_nodes"))
        yield client
        await client.aclose()
        return
    client = Redis.from_url(request.getfixturevalue("redis_url"), decode_responses=True)
    yield client
    await client.aclose()


@pytest.fixture
def store(redis, clock) -> RedisPresenceStore:
    return RedisPresenceStore(redis, window_minutes=5, clock=clock)


async def test_mark_writes_the_recipes_keys_with_expireat(store, redis, clock) -> None:
    await store.mark("u1")
    minute = int(clock()) // 60
    assert await redis.smembers(f"{{presence}}online-users/{minute}") == {"u1"}
    assert await redis.get("{presence}user-activity/u1") == str(int(clock()))
    expected = int(clock()) + 5 * 60 + 10
    assert await redis.expiretime(f"{{presence}}online-users/{minute}") == expected
    assert await redis.expiretime("{presence}user-activity/u1") == expected


async def test_mark_is_one_executed_pipeline(store, redis) -> None:
    """One published copy of the recipe never called execute(): nothing was written."""
    executed = []
    original = redis.pipeline

    def counting_pipeline(*args, **kwargs):
        pipeline = original(*args, **kwargs)
        real_execute = pipeline.execute

        async def execute(*a, **k):
            executed.append(len(pipeline))  # the commands queued
            return await real_execute(*a, **k)

        pipeline.execute = execute
        return pipeline

    redis.pipeline = counting_pipeline
    await store.mark("u1")
    assert executed == [4]  # SADD, SET, EXPIREAT, EXPIREAT in one round trip
    assert await redis.exists("{presence}user-activity/u1") == 1


async def test_window_boundaries(store, clock) -> None:
    await store.mark("early")
    clock.advance(60)
    await store.mark("later")
    assert set(await store.online(5)) == {"early", "later"}
    assert set(await store.online(1)) == {"later"}
    clock.advance(4 * 60)  # "early" is now 5 buckets back: outside a 5-minute window
    assert set(await store.online(5)) == {"later"}
    clock.advance(60)
    assert await store.online(5) == {}


async def test_online_reports_last_activity(store, clock) -> None:
    await store.mark("u1")
    clock.advance(30)
    await store.mark("u1")
    assert await store.online(5) == {"u1": clock()}
    assert await store.last_seen("u1") == clock()
    assert await store.last_seen("nobody") is None


async def test_wider_window_than_recorded_is_refused(store) -> None:
    with pytest.raises(ValueError, match="minutes: must be from 1 to 5"):
        await store.online(6)
    with pytest.raises(ValueError):
        await store.online(0)


async def test_keys_really_expire(redis_url) -> None:
    import time

    client = Redis.from_url(redis_url, decode_responses=True)
    try:
        # A 1-minute window and a clock 68.5 s behind: EXPIREAT lands 0.5 to 1.5 s from now.
        past = lambda: time.time() - 70 + 1.5  # noqa: E731
        store = RedisPresenceStore(client, window_minutes=1, clock=past)
        await store.mark("u1")
        assert await client.exists("{presence}user-activity/u1") == 1
        assert 0 < await client.pttl("{presence}user-activity/u1") <= 1500

        async def expired() -> bool:  # Redis itself removes it
            return not await client.exists("{presence}user-activity/u1")

        await eventually(expired, timeout=5)
    finally:
        await client.aclose()


async def test_key_prefix(redis, clock) -> None:
    store = RedisPresenceStore(redis, window_minutes=5, key_prefix="qf:", clock=clock)
    await store.mark("u1")
    assert await redis.exists("qf:{presence}user-activity/u1") == 1
    assert await redis.exists("{presence}user-activity/u1") == 0
