"""The leader lease on the real Redis (redis-py's Lock): one holder at a time, renewal keeps it,
release or expiry hands it over."""

from __future__ import annotations

from redis.asyncio import Redis

from app.scheduler.leadership import RedisLeadership
from tests.waiting import eventually


async def test_one_holder_renewal_release_and_expiry(redis_url) -> None:
    client = Redis.from_url(redis_url)
    try:
        first = RedisLeadership(client, key="test:leader", lease_seconds=1)
        second = RedisLeadership(client, key="test:leader", lease_seconds=1)
        assert await first.acquire_or_renew() is True
        assert await second.acquire_or_renew() is False
        assert await first.leader() == first.identity

        async def lease_has_run_down() -> bool:
            return await client.pttl("test:leader") < 900

        await eventually(lease_has_run_down, timeout=3)
        ttl_before = await client.pttl("test:leader")
        assert await first.acquire_or_renew() is True  # renewed to the full lease
        assert ttl_before < await client.pttl("test:leader") <= 1000

        await first.release()
        assert await first.leader() is None
        assert await second.acquire_or_renew() is True
        await second.release()  # releasing twice, or what another holds, is harmless
        await second.release()

        assert await first.acquire_or_renew() is True
        # first stops renewing: its lease expires and second takes over, within the lease.
        await eventually(second.acquire_or_renew, timeout=3)
        assert await first.acquire_or_renew() is False  # and first knows it lost it
        assert await first.leader() == second.identity
    finally:
        await client.aclose()
