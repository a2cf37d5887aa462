"""`/ws/chat` dispatches each client event through one table (app/ws/chat/room_chat.py
`EVENTS`): every event the protocol accepts has exactly one handler, and the events that need
a room are refused for a room the sender has not joined, whatever the table's order."""

from __future__ import annotations

import json
import typing

from app.realtime.connection import Connection
from app.realtime.protocol import Join, Leave, Message, Ping, Private
from app.ws.chat.room_chat import EVENTS, _chat_frame


def _event_names() -> set[str]:
    names = set()
    for model in (Ping, Join, Leave, Message, Private):
        (literal,) = typing.get_args(model.model_fields["event"].annotation)
        names.add(literal)
    return names


def test_every_protocol_event_has_one_handler() -> None:
    assert set(EVENTS) == _event_names()


def test_only_join_and_ping_need_no_room() -> None:
    assert {name for name, handler in EVENTS.items() if not handler.in_room} == {"join", "ping"}


class Recording(Connection):
    """A connection whose frames are kept instead of written (no socket)."""

    __slots__ = ("sent",)

    def __init__(self) -> None:
        super().__init__(None, endpoint="chat")
        self.sent: list[dict[str, object]] = []

    def send(self, frame: dict[str, object] | str, wire_frame: bytes | None = None) -> bool:  # type: ignore[override]
        self.sent.append(frame if isinstance(frame, dict) else json.loads(frame))
        return True


async def test_room_events_outside_the_room_are_refused_before_their_handler() -> None:
    connection = Recording()
    for frame in (
        {"event": "leave", "room": "lobby"},
        {"event": "message", "room": "lobby", "text": "hi"},
        {"event": "private", "room": "lobby", "to": "bob", "text": "psst"},
    ):
        await _chat_frame(connection, json.dumps(frame))
    assert [f["event"] for f in connection.sent] == ["error"] * 3
    assert all("join 'lobby' first" in str(f["msg"]) for f in connection.sent)


async def test_ping_needs_no_room() -> None:
    connection = Recording()
    await _chat_frame(connection, json.dumps({"event": "ping"}))
    assert connection.sent == [{"event": "pong"}]
