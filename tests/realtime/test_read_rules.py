"""The websocket rate limit (app/realtime/read_rules.py): `ReadRules.check` judges each frame
(a fixed window per connection; `flood_strikes` frames over the rate in a row are a flood),
and `Connection.handle_frame` answers the verdict: an error frame per extra frame, then 1008."""

from __future__ import annotations

import json

from limits import parse

from app.realtime.connection import (
    MESSAGE_TOO_BIG,
    POLICY_VIOLATION,
    Connection,
)
from app.realtime.read_rules import FrameVerdict, ReadRules
from tests.waiting import eventually

ALLOW, RATE_LIMITED, FLOOD = FrameVerdict.ALLOW, FrameVerdict.RATE_LIMITED, FrameVerdict.FLOOD


def rules(rate: str, flood_strikes: int, max_message_bytes: int = 65536) -> ReadRules:
    return ReadRules(
        max_message_bytes=max_message_bytes,
        idle_timeout=60,
        rate=parse(rate),
        flood_strikes=flood_strikes,
    )


def connection() -> Connection:
    return Connection(None, endpoint="chat")


def queued_frames(client: Connection) -> list[dict]:
    """The frames waiting for a client not yet accepted (so none are written), taken out."""
    return [json.loads(text) for text in client.take_waiting()]


def test_frames_past_the_rate_are_limited_then_a_flood_per_connection() -> None:
    limits = rules("3/minute", flood_strikes=2)
    flooder, neighbour = connection(), connection()
    assert [limits.check(flooder) for _ in range(5)] == [ALLOW, ALLOW, ALLOW, RATE_LIMITED, FLOOD]
    # Each connection has a window of its own.
    assert [limits.check(neighbour) for _ in range(3)] == [ALLOW, ALLOW, ALLOW]
    # Judging acts on nothing: the connection answers the verdict (below).
    assert not flooder.is_closing and queued_frames(flooder) == []


async def test_a_connection_answers_limited_frames_with_errors_then_closes_with_1008() -> None:
    limits = rules("2/minute", flood_strikes=2)
    client = connection()
    handled: list[str] = []

    async def on_text(_: Connection, text: str) -> None:
        handled.append(text)

    for number in range(3):
        await client.handle_frame(f'"{number}"', on_text, limits)
    assert handled == ['"0"', '"1"']
    assert queued_frames(client) == [
        {"event": "error", "msg": "rate limited: at most 2 per 1 minute"}
    ]
    assert not client.is_closing
    await client.handle_frame('"3"', on_text, limits)  # the second strike in a row
    assert handled == ['"0"', '"1"']
    assert client.is_closing and client.close_reason is not None
    assert client.close_reason[0] == POLICY_VIOLATION


async def test_a_frame_over_the_size_limit_closes_with_1009_before_it_is_counted() -> None:
    limits = rules("1/minute", flood_strikes=1000, max_message_bytes=8)
    client = connection()

    async def on_text(_: Connection, text: str) -> None:
        raise AssertionError("never handled")

    await client.handle_frame("x" * 9, on_text, limits)
    assert client.close_reason is not None and client.close_reason[0] == MESSAGE_TOO_BIG
    assert limits.check(client) is ALLOW  # the oversized frame used none of the window


async def test_a_new_window_allows_frames_again_and_forgives_the_strikes() -> None:
    limits = rules("2/second", flood_strikes=3)
    client = connection()
    assert [limits.check(client) for _ in range(4)] == [ALLOW, ALLOW, RATE_LIMITED, RATE_LIMITED]

    async def allowed() -> bool:
        return limits.check(client) is ALLOW

    await eventually(allowed, timeout=5)  # the window of one second ends
    # The strikes were forgiven: two more over the rate are not yet a flood.
    assert [limits.check(client) for _ in range(3)] == [ALLOW, RATE_LIMITED, RATE_LIMITED]


def test_forgetting_a_connection_drops_its_window() -> None:
    limits = rules("1/minute", flood_strikes=1000)
    client = connection()
    assert limits.check(client) is ALLOW
    assert limits.check(client) is RATE_LIMITED
    limits.forget(client)
    assert limits.check(client) is ALLOW
