"""The websocket rate limit (app/realtime/connection.py, ReadRules): a fixed window per
connection, an error frame per extra frame, 1008 after `flood_strikes` in a row."""

from __future__ import annotations

import json

from limits import parse

from app.realtime.connection import POLICY_VIOLATION, Connection, ReadRules
from tests.waiting import eventually


def rules(rate: str, flood_strikes: int) -> ReadRules:
    return ReadRules(
        max_message_bytes=65536, idle_timeout=60, rate=parse(rate), flood_strikes=flood_strikes
    )


def connection() -> Connection:
    return Connection(None, endpoint="chat")


def queued_frames(client: Connection) -> list[dict]:
    """The frames waiting for a client not yet accepted (so none are written), taken out."""
    return [json.loads(text) for text in client.take_waiting()]


async def test_frames_past_the_rate_get_errors_then_a_1008_close() -> None:
    limits = rules("3/minute", flood_strikes=2)
    flooder, neighbour = connection(), connection()
    assert [limits.allow(flooder) for _ in range(3)] == [True, True, True]
    assert limits.allow(flooder) is False
    assert queued_frames(flooder) == [
        {"event": "error", "msg": "rate limited: at most 3 per 1 minute"}
    ]
    assert not flooder.is_closing
    assert limits.allow(flooder) is False  # the second strike in a row
    assert flooder.is_closing and flooder.close_reason is not None
    assert flooder.close_reason[0] == POLICY_VIOLATION
    # Each connection has a window of its own.
    assert [limits.allow(neighbour) for _ in range(3)] == [True, True, True]


async def test_a_new_window_allows_frames_again_and_forgives_the_strikes() -> None:
    limits = rules("2/second", flood_strikes=1000)
    client = connection()
    assert [limits.allow(client) for _ in range(3)] == [True, True, False]

    async def allowed() -> bool:
        return limits.allow(client)

    await eventually(allowed, timeout=5)  # the window of one second ends
    assert not client.is_closing


async def test_forgetting_a_connection_drops_its_window() -> None:
    limits = rules("1/minute", flood_strikes=1000)
    client = connection()
    assert limits.allow(client) is True
    assert limits.allow(client) is False
    limits.forget(client)
    assert limits.allow(client) is True
