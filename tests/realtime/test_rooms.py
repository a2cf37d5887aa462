"""Room records in Redis: atomic joins, expiry of empty rooms, and a failed join releasing its
name at once (real Redis, the tests' database)."""

from __future__ import annotations

import asyncio

from redis.asyncio import Redis

from app.realtime.rooms import RedisRoomDirectory, member_record
from tests.realtime.conftest import receive_json, send_json

STALE_AFTER = 30.0


def directory(redis_url: str, **options) -> tuple[Redis, RedisRoomDirectory]:
    client = Redis.from_url(redis_url, decode_responses=True)
    return client, RedisRoomDirectory(
        client, stale_after=STALE_AFTER, history_seconds=600, **options
    )


async def test_room_records_expire_once_nobody_refreshes_them(redis_url) -> None:
    client, rooms = directory(redis_url)
    try:
        member = member_record("c1", "ann", None, rooms.clock())
        assert await rooms.join_member("lobby", member, "conn:c1")
        await rooms.append_history("lobby", {"text": "hi"}, keep=10)
        for kind in ("members", "names"):
            assert 0 < await client.ttl(f"room/lobby/{kind}") <= STALE_AFTER + 1
        assert 0 < await client.ttl("room/lobby/history") <= 600
        await rooms.refresh("lobby", [member])  # a heartbeat keeps the room alive
        assert await client.ttl("room/lobby/members") > STALE_AFTER - 2
    finally:
        await client.aclose()


async def test_concurrent_claims_of_one_name_from_two_clients_have_one_winner(redis_url) -> None:
    """Two workers (two clients) claim the same free name at once, 50 times: one wins each
    time. The claim and the membership are one script, so there is no window between them."""
    first_client, first = directory(redis_url)
    second_client, second = directory(redis_url)
    try:
        for round_number in range(50):
            room = f"race-{round_number}"
            results = await asyncio.gather(
                first.join_member(room, member_record("a", "same", None, first.clock()), "conn:a"),
                second.join_member(
                    room, member_record("b", "same", None, second.clock()), "conn:b"
                ),
            )
            assert sorted(results) == [False, True], (round_number, results)
            assert len(await first.members(room)) == 1
    finally:
        await first_client.aclose()
        await second_client.aclose()


async def test_a_name_whose_holder_went_stale_can_be_taken(redis_url) -> None:
    client, rooms = directory(redis_url)
    try:
        old = member_record("c1", "ann", None, rooms.clock() - STALE_AFTER - 1)
        assert await rooms.join_member("lobby", old, "conn:c1")
        fresh = member_record("c2", "ann", None, rooms.clock())
        assert await rooms.join_member("lobby", fresh, "conn:c2")
        live = member_record("c3", "ann", None, rooms.clock())
        assert not await rooms.join_member("lobby", live, "conn:c3")
    finally:
        await client.aclose()


async def test_a_join_that_fails_releases_its_name_at_once(serve_app, redis_url) -> None:
    """The room's history key holds the wrong type, so reading it fails after the name was
    claimed: the client gets an error frame, and the name is free again right away."""
    async with serve_app(redis_url=redis_url, api_auth="open") as app:
        raw = Redis.from_url(redis_url)
        await raw.set("room/broken/history", "not a list")
        client = app.test_client()
        async with client.websocket("/ws/chat") as ann:
            await send_json(ann, {"event": "join", "room": "broken", "nickname": "ann"})
            reply = await receive_json(ann)
            assert reply["event"] == "error" and "unavailable" in reply["msg"], reply
            assert await raw.hlen("room/broken/names") == 0
            assert await raw.hlen("room/broken/members") == 0
            await raw.delete("room/broken/history")
            await send_json(ann, {"event": "join", "room": "broken", "nickname": "ann"})
            assert (await receive_json(ann))["event"] == "presence_state"
        await raw.aclose()
