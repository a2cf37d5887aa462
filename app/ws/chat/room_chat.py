"""`/ws/chat`: rooms with presence and a resumable log (docs/websockets.md "Recovery").

Events `join` (with `since` to resume, `claim` to take an anonymous nickname back), `leave`,
`message` (numbered in the room's log: app.realtime.rooms), `private` (live only), `ping`.
"""

from __future__ import annotations

import contextlib
import secrets
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from app.metrics import CHAT_RECOVERIES
from app.models import new_id
from app.realtime.connection import STORE_ERRORS, STORE_UNAVAILABLE, Connection
from app.realtime.protocol import (
    ChatFrame,
    FrameError,
    Join,
    Leave,
    Message,
    Ping,
    Private,
    Since,
    parse_frame,
    timestamp,
)
from app.realtime.room_service import history_frame
from app.realtime.rooms import Position
from app.ws.handshake import check_origin
from app.ws.session import current_rooms, identity_fields, new_connection, run_connection


async def _join(connection: Connection, frame: Join) -> None:
    # A burst of joins is admitted a few at a time: each then runs at full speed, within its
    # store timeouts, instead of all of them starving each other past those timeouts.
    async with current_rooms().join_slots:
        await _join_admitted(connection, frame)


async def _join_admitted(connection: Connection, frame: Join) -> None:
    rooms = current_rooms()
    if connection.in_room(frame.room):
        connection.send_error(f"room: already in {frame.room!r}", ref="join")
        return
    if connection.user_id is None:
        if frame.nickname is None:
            connection.send_error(
                "nickname: required for anonymous clients (or log in)", ref="join"
            )
            return
        if connection.name not in (None, frame.nickname):
            connection.send_error("nickname: one nickname per connection", ref="join")
            return
        if await rooms.is_account_name(frame.nickname):
            connection.send_error(
                f"nickname: {frame.nickname!r} is (or looks like) an account's name; log in",
                ref="join",
            )
            return
        connection.claim = connection.claim or frame.claim or secrets.token_urlsafe(24)
    name = frame.nickname if connection.user_id is None else connection.name
    assert name is not None  # checked above for anonymous clients; an account's name else
    if not await rooms.join(connection, frame.room, name):
        connection.send_error(
            f"nickname: {frame.nickname!r} is taken in {frame.room!r}", ref="join"
        )
        return
    try:
        await _welcome(connection, frame.room, frame.since)
    except Exception:
        # Release the name at once (not after three missed heartbeats), then report.
        with contextlib.suppress(Exception):
            await rooms.leave(connection, frame.room)
        raise


async def _welcome(connection: Connection, room: str, since: Since | None) -> None:
    """After a join: the join to the others, then the room's state and its log to the
    newcomer: every message after `since` when the log still has them (`recovered`), else the
    latest. Everything that can fail comes first, so a failed join sends no state."""
    rooms = current_rooms()
    members = await rooms.directory.members(room)
    read = await rooms.directory.read_log(
        room, Position(since.epoch, since.offset) if since else None
    )
    if since is not None:
        CHAT_RECOVERIES.labels("true" if read.recovered else "false").inc()
    others = [m for m in members if m["name"] == connection.name and m["conn"] != connection.id]
    if not others:
        await rooms.announce_presence(room, joined=presence_entry(connection), skip=connection.id)
    state_frame: dict[str, Any] = {
        "event": "presence_state",
        "room": room,
        "you": connection.name,
        "members": rooms.presence_entries(members),
    }
    if connection.claim is not None:  # to this anonymous client only: its nickname's owner
        state_frame["claim"] = connection.claim
    connection.send(state_frame)
    connection.send(history_frame(room, read))
    rooms.welcomed(connection, room, (read.epoch, read.top) if read.epoch else None)


def sender_key(connection: Connection) -> str:
    """Whose message ids these are: the account, or the anonymous nickname's claim (which a
    reconnecting client sends back), so a resend from a new connection is recognised."""
    if connection.user_id is not None:
        return f"user:{connection.user_id}"
    return f"claim:{connection.claim or connection.id}"


def presence_entry(connection: Connection) -> dict[str, str | None]:
    return {"name": connection.room_name, "user_id": connection.user_id}


async def _announce_leave(connection: Connection, room: str) -> None:
    await current_rooms().announce_presence(room, left=presence_entry(connection))


async def _on_ping(connection: Connection, _frame: Ping) -> None:
    connection.send({"event": "pong"})


async def _on_leave(connection: Connection, frame: Leave) -> None:
    if await current_rooms().leave(connection, frame.room):
        await _announce_leave(connection, frame.room)
    connection.send({"event": "left", "room": frame.room})


async def _on_message(connection: Connection, frame: Message) -> None:
    rooms = current_rooms()
    message = {
        "event": "message",
        "id": new_id(),
        "room": frame.room,
        "from": connection.name,
        "text": frame.text,
        "ts": timestamp(),
    }
    # Numbered, logged and sent in one step; a store that fails does none of it, and the
    # sender is told, naming its id.
    if frame.id is None:
        await rooms.publish_to_room(frame.room, message)  # an error frame: STORE_ERRORS
        return
    try:
        published = await rooms.publish_to_room(
            frame.room, message, sent_id=f"{sender_key(connection)}/{frame.id}"
        )
    except STORE_ERRORS:
        connection.send_error(STORE_UNAVAILABLE, code="unavailable", ref="message", id=frame.id)
        return
    connection.send(
        {
            "event": "ack",
            "id": frame.id,
            "room": frame.room,
            "offset": published.message["offset"],
            "epoch": published.message["epoch"],
            "duplicate": published.duplicate,
        }
    )


async def _on_private(connection: Connection, frame: Private) -> None:
    rooms = current_rooms()
    members = await rooms.directory.members(frame.room)
    if not any(member["name"] == frame.to for member in members):
        connection.send_error(f"to: {frame.to!r} is not in {frame.room!r}", ref="private")
        return
    message = {
        "event": "private",
        "id": new_id(),
        "room": frame.room,
        "from": connection.name,
        "to": frame.to,
        "text": frame.text,
        "ts": timestamp(),
    }
    await rooms.send_private(frame.room, frame.to, message)
    if frame.to != connection.name:
        connection.send(message)  # the sender's copy


@dataclass(frozen=True)
class EventHandler:
    """One client event's handler; `in_room`: refused with an error frame unless the sender
    is in the frame's `room` (checked before the handler runs)."""

    handle: Callable[[Connection, Any], Awaitable[None]]
    in_room: bool


# One handler per client event (as Phoenix's `handle_in`): adding an event is a frame model in
# app/realtime/protocol.py and a row here.
EVENTS: dict[str, EventHandler] = {
    "ping": EventHandler(_on_ping, in_room=False),
    "join": EventHandler(_join, in_room=False),
    "leave": EventHandler(_on_leave, in_room=True),
    "message": EventHandler(_on_message, in_room=True),
    "private": EventHandler(_on_private, in_room=True),
}


async def _chat_frame(connection: Connection, text: str) -> None:
    try:
        frame = parse_frame(text, ChatFrame)
    except FrameError as error:
        connection.send_error(str(error))
        return
    handler = EVENTS[frame.event]
    room: str | None = getattr(frame, "room", None)
    if handler.in_room and (room is None or not connection.in_room(room)):
        connection.send_error(f"room: join {room!r} first", ref=frame.event)
        return
    await handler.handle(connection, frame)


async def _chat_close(connection: Connection, rooms_left: list[str]) -> None:
    # The session left the rooms (RoomService.leave_all); announce the names gone from them.
    rooms = current_rooms()
    for room in rooms_left:
        members = await rooms.directory.members(room)
        if not any(member["name"] == connection.name for member in members):
            await _announce_leave(connection, room)


async def chat_socket() -> None:
    check_origin()
    fields = identity_fields()
    connection = new_connection("chat", name=fields["name"], user_id=fields["user_id"])
    await run_connection(connection, _chat_frame, on_close=_chat_close)
