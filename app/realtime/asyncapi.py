"""The websocket protocol as an AsyncAPI 3.0 document, served at `/asyncapi.json`
(docs/websockets.md is its prose).

Client frames are the pydantic models the endpoints validate with (app.realtime.protocol), so
the document cannot drift from what the server accepts. Server frames are described by the
models below; tests/e2e validate every frame the servers send in the suite against this
document (tests/frame_validation.py), and the suite runs `@asyncapi/parser` on it.

The document describes the service: an operation with `action: receive` is a frame a client
sends, `action: send` one the service sends. Close codes are in each channel's description and
in `x-close-codes`; the handshake's credentials are the security schemes.
"""

from __future__ import annotations

from functools import cache
from importlib.metadata import version
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from app.realtime.protocol import (
    Join,
    Leave,
    Message,
    MonitorFrame,
    NicknameChatFrame,
    Ping,
    Private,
)

SCHEMAS = "#/components/schemas/"


class ServerFrame(BaseModel):
    """Frames the service sends; unknown fields may be added later (clients ignore them)."""

    model_config = ConfigDict(extra="allow")


class Pong(ServerFrame):
    """The answer to `{"event": "ping"}`."""

    event: Literal["pong"]


class ErrorFrame(ServerFrame):
    """A frame that was refused, or could not be served: the connection stays open.
    `ref`: the client event it answers; `id`: the message whose publish failed; `code`:
    `unavailable` when the shared store is down (try again later)."""

    event: Literal["error"]
    msg: str
    ref: str | None = None
    id: str | None = None
    code: str | None = None


class Member(ServerFrame):
    name: str
    user_id: str | None


class PresenceState(ServerFrame):
    """Who is in the room, first on a join; `claim` (anonymous joiners only) owns the nickname
    across reconnects: send it back in the rejoin."""

    event: Literal["presence_state"]
    room: str
    you: str
    members: list[Member]
    claim: str | None = None


class PresenceDiff(ServerFrame):
    """Names that came (`joins`) and went (`leaves`) since the last diff (200 ms batches)."""

    event: Literal["presence_diff"]
    room: str
    joins: list[Member]
    leaves: list[Member]


class RoomMessage(ServerFrame):
    """A message in the room's log: `offset` (1, 2, 3, … within an `epoch`) places it; `ts`
    is ISO 8601 UTC with milliseconds; `id` a UUIDv7 given by the server."""

    event: Literal["message"]
    id: str
    room: str
    text: str
    ts: str
    offset: int
    epoch: str
    from_: str = Field(alias="from")


class History(ServerFrame):
    """The room's messages on a join, oldest first: every one after `since` when `recovered`,
    else the last `CHAT_HISTORY`; `epoch` and `offset` are the log's ("" and 0 when empty)."""

    event: Literal["history"]
    room: str
    messages: list[RoomMessage]
    recovered: bool
    epoch: str
    offset: int


class PrivateMessage(ServerFrame):
    """A private message (live only: no offset)."""

    event: Literal["private"]
    id: str
    room: str
    to: str
    text: str
    ts: str
    from_: str = Field(alias="from")


class Ack(ServerFrame):
    """A `message` with an `id` is stored at `offset`; `duplicate`: a resend of one stored."""

    event: Literal["ack"]
    id: str
    room: str
    offset: int
    epoch: str
    duplicate: bool


class Left(ServerFrame):
    """The answer to `leave`."""

    event: Literal["left"]
    room: str


class Connected(ServerFrame):
    """On connect: the seed's `{"event": "connect", "data": "连接成功"}`."""

    event: Literal["connect"]
    data: str


class MemorySample(ServerFrame):
    """`psutil.virtual_memory()`: bytes as integers, `percent` a float."""

    total: int
    available: int
    percent: float
    used: int
    free: int


class ServerResponse(ServerFrame):
    """A memory sample, every `MONITOR_INTERVAL` seconds while the stream runs."""

    event: Literal["server_response"]
    data: MemorySample


class NicknameBroadcast(ServerFrame):
    """The seed's `{"name", "msg"}` to every client of the endpoint."""

    name: str
    msg: str


class NicknamePrivate(ServerFrame):
    """The seed's `{"from_user", "msg"}` to the named client only."""

    from_user: str
    msg: str


class RelayedText(BaseModel):
    """`/websocket` relays each text frame as it is: any text (an empty one is a heartbeat)."""


CLOSE_CODES = {
    "1000": "closed on purpose (the client's own close, answered)",
    "1001": "going away: the worker is shutting down (reconnect)",
    "1002": "protocol error (data before the handshake's answer, a bad frame)",
    "1007": "a text frame that is not UTF-8",
    "1008": "policy: idle for WS_IDLE_TIMEOUT, a flood (WS_FLOOD_STRIKES refused frames in a "
    "row), or the seed nickname chat's bad nickname",
    "1009": "a frame over WS_MAX_MESSAGE_BYTES",
    "1011": "a server error (logged)",
    "1013": "try again later: a slow reader (its send queue full, or a frame waited longer than "
    "WS_SEND_MAX_DELAY), or the shared store down on the seed nickname chat",
}
CLOSE_TEXT = "Close codes: " + "; ".join(f"{code} {text}" for code, text in CLOSE_CODES.items())

# (channel, address, description, client frames, server frames)
Channel = tuple[str, str, str, list[type[BaseModel]], list[type[BaseModel]]]
CHANNELS: list[Channel] = [
    (
        "chat",
        "/ws/chat",
        "Rooms with presence, history, recovery (`since`) and publish acknowledgements "
        "(`id` on `message`). docs/websockets.md.",
        [Join, Message, Private, Ping, Leave],  # in the order a session uses them
        [
            PresenceState,
            PresenceDiff,
            History,
            RoomMessage,
            PrivateMessage,
            Ack,
            Left,
            Pong,
            ErrorFrame,
        ],
    ),
    (
        "monitor",
        "/ws",
        "The memory monitor: a sample every MONITOR_INTERVAL seconds; `start` and `stop`.",
        [MonitorFrame],
        [Connected, ServerResponse, Pong, ErrorFrame],
    ),
    (
        "relay",
        "/websocket",
        "The seed's anonymous group chat: every text frame relayed to every client, the "
        "sender included; binary frames get an error frame.",
        [RelayedText],
        [RelayedText, ErrorFrame],
    ),
    (
        "nickname",
        "/websocket/{nickname}",
        'The seed\'s nickname chat: `{"msg"}` to all, with `to_user` (or `to_client`) to one.',
        [NicknameChatFrame],
        [NicknameBroadcast, NicknamePrivate, Pong, ErrorFrame],
    ),
]


def _schemas(models: set[type[BaseModel]]) -> dict[str, Any]:
    """JSON Schemas (draft 2020-12, as pydantic writes them) of `models`, by model name, with
    their nested models beside them."""
    found: dict[str, Any] = {}
    for model in sorted(models, key=lambda m: m.__name__):
        if model is RelayedText:
            found[model.__name__] = {"type": "string", "description": model.__doc__}
            continue
        schema = model.model_json_schema(by_alias=True, ref_template=SCHEMAS + "{model}")
        found.update(schema.pop("$defs", {}))
        found[model.__name__] = schema
    return found


# One example of each frame a client sends (tests/e2e/test_asyncapi.py sends every one to a
# real server: "bob" is in the room when "ann" sends hers).
CLIENT_EXAMPLES: dict[str, list[Any]] = {
    "Join": [{"event": "join", "room": "lobby", "nickname": "ann"}],
    "Message": [
        {"event": "message", "room": "lobby", "text": "hello"},
        {"event": "message", "room": "lobby", "text": "acknowledged", "id": "m-1"},
    ],
    "Private": [{"event": "private", "room": "lobby", "to": "bob", "text": "psst"}],
    "Ping": [{"event": "ping"}],
    "Leave": [{"event": "leave", "room": "lobby"}],
    "MonitorFrame": [{"event": "stop"}, {"event": "start"}, {"event": "ping"}],
    "RelayedText": ["hello, everyone"],
    "NicknameChatFrame": [{"msg": "hello"}, {"msg": "psst", "to_user": "bob"}, {"event": "ping"}],
}


def _message(model: type[BaseModel]) -> dict[str, Any]:
    message: dict[str, Any] = {
        "name": model.__name__,
        "title": model.__name__,
        "summary": (model.__doc__ or model.__name__).strip().split("\n")[0],
        "contentType": "application/json" if model is not RelayedText else "text/plain",
        "payload": {"$ref": SCHEMAS + model.__name__},
    }
    examples = CLIENT_EXAMPLES.get(model.__name__)
    if examples:
        message["examples"] = [
            {"name": f"{model.__name__}{number}", "payload": payload}
            for number, payload in enumerate(examples, 1)
        ]
    return message


@cache
def asyncapi_document() -> dict[str, Any]:
    """The AsyncAPI 3.0.0 document of every websocket endpoint (a JSON object)."""
    models = {model for *_, sent, received in CHANNELS for model in (*sent, *received)}
    channels: dict[str, Any] = {}
    operations: dict[str, Any] = {}
    for name, address, description, client_frames, server_frames in CHANNELS:
        messages = {
            model.__name__: {"$ref": f"#/components/messages/{model.__name__}"}
            for model in dict.fromkeys([*client_frames, *server_frames])
        }
        channel: dict[str, Any] = {
            "address": address,
            "description": f"{description} {CLOSE_TEXT}.",
            "messages": messages,
            "x-close-codes": CLOSE_CODES,
        }
        if "{nickname}" in address:
            channel["parameters"] = {
                "nickname": {"description": "1 to 32 characters, no control characters"}
            }
        channels[name] = channel
        for action, frames in (("receive", client_frames), ("send", server_frames)):
            operations[f"{name}{action.capitalize()}"] = {
                "action": action,
                "channel": {"$ref": f"#/channels/{name}"},
                "summary": f"frames the service {action}s on {address}",
                "messages": [
                    {"$ref": f"#/channels/{name}/messages/{model.__name__}"} for model in frames
                ],
            }
    return {
        "asyncapi": "3.0.0",
        "info": {
            "title": "quart-framework websockets",
            "version": version("quart-framework"),
            "description": (
                "Every websocket endpoint of the service: JSON text frames with an `event` key "
                "(the seed-compatible /websocket relays any text). The handshake checks Origin "
                "(403) and credentials (401 when wrong; anonymous without any). docs/websockets.md."
            ),
        },
        "defaultContentType": "application/json",
        "servers": {
            "service": {
                "host": "localhost:8000",
                "protocol": "ws",
                "description": "The service itself (wss behind TLS); any host it is served on.",
                "security": [
                    {"$ref": "#/components/securitySchemes/session"},
                    {"$ref": "#/components/securitySchemes/bearer"},
                    {"$ref": "#/components/securitySchemes/token"},
                    {"$ref": "#/components/securitySchemes/basic"},
                ],
            }
        },
        "channels": channels,
        "operations": operations,
        "components": {
            "schemas": _schemas(models),
            "messages": {
                model.__name__: _message(model)
                for model in sorted(models, key=lambda m: m.__name__)
            },
            "securitySchemes": {
                "session": {
                    "type": "httpApiKey",
                    "name": "session",
                    "in": "cookie",
                    "description": "The session cookie of POST /login",
                },
                "bearer": {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "POST /api/v1/tokens",
                },
                "token": {
                    "type": "httpApiKey",
                    "name": "token",
                    "in": "query",
                    "description": "?token=<bearer token>: browsers cannot set headers on a websocket",
                },
                "basic": {"type": "http", "scheme": "basic"},
            },
        },
    }
