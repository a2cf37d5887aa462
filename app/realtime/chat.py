"""Chat over native websockets (docs/websockets.md).

- `/websocket`: the seed's anonymous group chat: every text frame goes to every client.
- `/websocket/<nickname>`: the seed's nickname chat: `{"msg"}` to everyone as `{"name", "msg"}`;
  with `to_user` or `to_client`, only to that nickname as `{"from_user", "msg"}`.
- `/ws/chat`: rooms with presence and history: events `join`, `leave`, `message`, `private`,
  `ping`.
Everything crosses workers and containers through the hub's broker.
"""

from __future__ import annotations

import contextlib
import logging
import re
import secrets
from collections.abc import Sequence
from typing import Any, TypedDict
from weakref import WeakKeyDictionary

from quart import Blueprint, render_template
from quart_schema import hide
from werkzeug.exceptions import BadRequest

from app import state
from app.auth.identity import current_identity
from app.batching import BatchedLookup
from app.db import Database
from app.metrics import CHAT_RECOVERIES
from app.models import new_id
from app.names import refusal, skeleton
from app.realtime.connection import Connection
from app.realtime.handshake import check_origin
from app.realtime.hub import NICKNAME_ROOM, history_frame
from app.realtime.messages import ToEndpoint
from app.realtime.protocol import (
    ChatFrame,
    FrameError,
    Join,
    Leave,
    Message,
    NicknameChatFrame,
    Ping,
    Private,
    Since,
    parse_frame,
    timestamp,
)
from app.realtime.rooms import MemberRecord, Position, member_record
from app.realtime.session import current_hub, new_connection, run_connection
from app.services import accounts

blueprint = Blueprint("chat", __name__)
log = logging.getLogger(__name__)
NICKNAME = re.compile(r"^[^\x00-\x1f\x7f/]{1,32}$")
RELAY: ToEndpoint = {"kind": "endpoint", "endpoint": "relay"}
NICKNAME_CHAT: ToEndpoint = {"kind": "endpoint", "endpoint": "nickname"}


def identity_fields() -> dict[str, str | None]:
    identity = current_identity()
    if identity is None:
        return {"name": None, "user_id": None}
    return {"name": identity.actor.name, "user_id": identity.user_id}


# /websocket: anonymous group chat ---------------------------------------------------------


async def _relay(connection: Connection, text: str) -> None:
    if text == "":  # an empty frame is a heartbeat: it keeps the connection, nobody sees it
        return
    await current_hub().publish(RELAY, text)


@blueprint.websocket("/websocket")
async def relay_socket() -> None:
    check_origin()
    await run_connection(new_connection("relay", user_id=identity_fields()["user_id"]), _relay)


# /websocket/<nickname>: the seed's nickname and private chat --------------------------------


async def _nickname_frame(connection: Connection, text: str) -> None:
    try:
        frame = parse_frame(text, NicknameChatFrame)
    except FrameError as error:
        connection.send_error(str(error))
        return
    if frame.event == "ping":
        connection.send({"event": "pong"})
        return
    if frame.msg is None:
        connection.send_error("msg: required")
        return
    hub = current_hub()
    recipient = frame.to_user or frame.to_client
    if recipient is None:
        await hub.publish(NICKNAME_CHAT, {"name": connection.name, "msg": frame.msg})
        return
    members = await hub.directory.members(NICKNAME_ROOM)
    if not any(member["name"] == recipient for member in members):
        connection.send_error(f"to_user: {recipient!r} is not online", to_user=recipient)
        return
    await hub.publish(
        {"kind": "names", "endpoint": "nickname", "names": [recipient]},
        {"from_user": connection.name, "msg": frame.msg},
    )


async def _nickname_open(connection: Connection) -> None:
    hub = current_hub()
    await hub.directory.add_member(
        NICKNAME_ROOM,
        member_record(
            connection.id, connection.room_name, connection.user_id, hub.directory.clock()
        ),
    )


async def _nickname_close(connection: Connection, _rooms: list[str]) -> None:
    await current_hub().directory.remove_member(
        NICKNAME_ROOM, connection.id, skeleton(connection.room_name), f"conn:{connection.id}"
    )


@blueprint.websocket("/websocket/<nickname>")
async def nickname_socket(nickname: str) -> None:
    check_origin()
    nickname = nickname.strip()
    if not NICKNAME.match(nickname):
        raise BadRequest("nickname: 1 to 32 characters, no control characters")
    reason = refusal(nickname)
    if reason is not None:
        raise BadRequest(f"nickname: {reason}")
    connection = new_connection("nickname", name=nickname, user_id=identity_fields()["user_id"])
    await run_connection(
        connection, _nickname_frame, on_open=_nickname_open, on_close=_nickname_close
    )


# /ws/chat: rooms, presence and history ----------------------------------------------------


class PresenceEntry(TypedDict):
    name: str
    user_id: str | None


def presence_names(members: Sequence[MemberRecord]) -> list[PresenceEntry]:
    """One entry per name (a user may be connected several times), sorted by name. The
    entries of the last member sequence are kept: joins that share one read of the room
    (RedisRoomDirectory.members) share this work too."""
    if _last_presence.members is members:
        return _last_presence.entries
    seen: dict[str, PresenceEntry] = {}
    for member in members:
        if member["name"] not in seen:
            seen[member["name"]] = {"name": member["name"], "user_id": member["user_id"]}
    entries = [seen[name] for name in sorted(seen)]
    _last_presence.members, _last_presence.entries = members, entries
    return entries


class _LastPresence:
    members: Sequence[MemberRecord] | None = None
    entries: list[PresenceEntry] = []


_last_presence = _LastPresence()


async def _taken_skeletons(skeletons: list[str]) -> dict[str, bool]:
    async with state.database().session() as session:
        return dict.fromkeys(await accounts.taken_skeletons(session, skeletons), True)


# Per database (one per served app): nickname checks of a burst of joins, one query a turn.
_account_names: WeakKeyDictionary[Database, BatchedLookup[str, bool]] = WeakKeyDictionary()


async def _nickname_is_an_account(nickname: str) -> bool:
    """Whether `nickname` is, or looks like, an account's name (app.names)."""
    database = state.database()
    lookup = _account_names.get(database)
    if lookup is None:
        lookup = _account_names[database] = BatchedLookup(_taken_skeletons, False)
    return await lookup.get(skeleton(nickname))


async def _join(connection: Connection, frame: Join) -> None:
    # A burst of joins is admitted a few at a time: each then runs at full speed, within its
    # store timeouts, instead of all of them starving each other past those timeouts.
    async with current_hub().join_slots:
        await _join_admitted(connection, frame)


async def _join_admitted(connection: Connection, frame: Join) -> None:
    hub = current_hub()
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
        if await _nickname_is_an_account(frame.nickname):
            connection.send_error(
                f"nickname: {frame.nickname!r} is (or looks like) an account's name; log in",
                ref="join",
            )
            return
        connection.name = frame.nickname
        connection.claim = connection.claim or frame.claim or secrets.token_urlsafe(24)
    try:
        joined = await hub.join(connection, frame.room)
    except Exception:
        joined = False
        raise
    finally:
        if not joined and not connection.rooms and connection.user_id is None:
            connection.name = None
    if not joined:
        connection.send_error(
            f"nickname: {frame.nickname!r} is taken in {frame.room!r}", ref="join"
        )
        return
    try:
        await _welcome(connection, frame.room, frame.since)
    except Exception:
        # Release the name at once (not after three missed heartbeats), then report.
        with contextlib.suppress(Exception):
            await hub.leave(connection, frame.room)
        raise


async def _welcome(connection: Connection, room: str, since: Since | None) -> None:
    """After a join: the join to the others, then the room's state and its log to the
    newcomer: every message after `since` when the log still has them (`recovered`), else the
    latest. Everything that can fail comes first, so a failed join sends no state."""
    hub = current_hub()
    members = await hub.directory.members(room)
    read = await hub.directory.read_log(
        room, Position(since.epoch, since.offset) if since else None
    )
    if since is not None:
        CHAT_RECOVERIES.labels("true" if read.recovered else "false").inc()
    others = [m for m in members if m["name"] == connection.name and m["conn"] != connection.id]
    if not others:
        await hub.announce_presence(room, joined=presence_entry(connection), skip=connection.id)
    state_frame: dict[str, Any] = {
        "event": "presence_state",
        "room": room,
        "you": connection.name,
        "members": presence_names(members),
    }
    if connection.claim is not None:  # to this anonymous client only: its nickname's owner
        state_frame["claim"] = connection.claim
    connection.send(state_frame)
    connection.send(history_frame(room, read))
    hub.welcomed(connection, room, (read.epoch, read.top) if read.epoch else None)


def presence_entry(connection: Connection) -> dict[str, str | None]:
    return {"name": connection.room_name, "user_id": connection.user_id}


async def _announce_leave(connection: Connection, room: str) -> None:
    await current_hub().announce_presence(room, left=presence_entry(connection))


async def _chat_frame(connection: Connection, text: str) -> None:
    try:
        frame = parse_frame(text, ChatFrame)
    except FrameError as error:
        connection.send_error(str(error))
        return
    hub = current_hub()
    if isinstance(frame, Ping):
        connection.send({"event": "pong"})
    elif isinstance(frame, Join):
        await _join(connection, frame)
    elif not connection.in_room(frame.room):
        connection.send_error(f"room: join {frame.room!r} first", ref=frame.event)
    elif isinstance(frame, Leave):
        if await hub.leave(connection, frame.room):
            await _announce_leave(connection, frame.room)
        connection.send({"event": "left", "room": frame.room})
    elif isinstance(frame, Message):
        message = {
            "event": "message",
            "id": new_id(),
            "room": frame.room,
            "from": connection.name,
            "text": frame.text,
            "ts": timestamp(),
        }
        # Numbered, logged and sent in one step; a store that fails does none of it (the
        # sender gets an error frame: Connection's STORE_ERRORS).
        await hub.publish_to_room(frame.room, message)
    elif isinstance(frame, Private):
        members = await hub.directory.members(frame.room)
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
        await hub.publish({"kind": "names", "room": frame.room, "names": [frame.to]}, message)
        if frame.to != connection.name:
            connection.send(message)  # the sender's copy


async def _chat_close(connection: Connection, rooms_left: list[str]) -> None:
    # unregister() already left the rooms; announce the names that are gone from them.
    hub = current_hub()
    for room in rooms_left:
        members = await hub.directory.members(room)
        if not any(member["name"] == connection.name for member in members):
            await _announce_leave(connection, room)


@blueprint.websocket("/ws/chat")
async def chat_socket() -> None:
    check_origin()
    fields = identity_fields()
    connection = new_connection("chat", name=fields["name"], user_id=fields["user_id"])
    await run_connection(connection, _chat_frame, on_close=_chat_close)


@blueprint.get("/chat")
@hide
async def chat_page() -> str:
    """The chat page: nickname (or the logged-in user), room, messages, private recipient, and
    who is in the room."""
    return await render_template("chat.html", identity=current_identity())
