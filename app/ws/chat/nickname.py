"""`/websocket/<nickname>`: the seed's nickname chat. `{"msg"}` goes to everyone as
`{"name", "msg"}`; with `to_user` or `to_client`, only to that nickname as `{"from_user", "msg"}`.
Nicknames may repeat, as in the seed; none may hold invisible characters or pass for an account
(its name or a look-alike), unless its owner connects.
The endpoint's members are the room directory's `NICKNAME_ROOM` (app.realtime.room_service)."""

from __future__ import annotations

import re

from werkzeug.exceptions import BadRequest

from app.auth.identity import current_identity
from app.names import refusal, skeleton
from app.realtime.connection import Connection
from app.realtime.messages import ToEndpoint
from app.realtime.protocol import FrameError, NicknameChatFrame, parse_frame
from app.realtime.room_service import NICKNAME_ROOM
from app.realtime.rooms import member_record
from app.ws.handshake import check_origin
from app.ws.session import (
    current_hub,
    current_rooms,
    identity_fields,
    new_connection,
    run_connection,
)

NICKNAME = re.compile(r"^[^\x00-\x1f\x7f/]{1,32}$")
NICKNAME_CHAT: ToEndpoint = {"kind": "endpoint", "endpoint": "nickname"}


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
    members = await current_rooms().directory.members(NICKNAME_ROOM)
    if not any(member["name"] == recipient for member in members):
        connection.send_error(f"to_user: {recipient!r} is not online", to_user=recipient)
        return
    await hub.publish(
        {"kind": "names", "endpoint": "nickname", "names": [recipient]},
        {"from_user": connection.name, "msg": frame.msg},
    )


async def _nickname_open(connection: Connection) -> None:
    directory = current_rooms().directory
    await directory.add_member(
        NICKNAME_ROOM,
        member_record(connection.id, connection.room_name, connection.user_id, directory.clock()),
    )


async def _nickname_close(connection: Connection, _rooms: list[str]) -> None:
    await current_rooms().directory.remove_member(
        NICKNAME_ROOM, connection.id, skeleton(connection.room_name), f"conn:{connection.id}"
    )


async def nickname_socket(nickname: str) -> None:
    check_origin()
    nickname = nickname.strip()
    if not NICKNAME.match(nickname):
        raise BadRequest("nickname: 1 to 32 characters, no control characters")
    reason = refusal(nickname)
    if reason is not None:
        raise BadRequest(f"nickname: {reason}")
    # Nicknames may repeat here (the seed's behaviour), but none may pass for an account: its
    # name, or one that looks like it, is its owner's only.
    identity = current_identity()
    own = identity is not None and skeleton(identity.actor.name) == skeleton(nickname)
    if not own and await current_rooms().is_account_name(nickname):
        raise BadRequest(
            "nickname: an account's name, or one that looks like it: log in as that account, "
            "or choose another"
        )
    connection = new_connection("nickname", name=nickname, user_id=identity_fields()["user_id"])
    await run_connection(
        connection, _nickname_frame, on_open=_nickname_open, on_close=_nickname_close
    )
