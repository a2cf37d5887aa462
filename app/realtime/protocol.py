"""Frames clients may send, as pydantic models: every frame has a schema (docs/websockets.md)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    TypeAdapter,
    ValidationError,
)

from app.json_provider import loads
from app.names import refusal
from app.validation import field_name

STRICT = ConfigDict(strict=True, extra="forbid")
RoomName = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_-]{1,64}$")]


def _one_script(value: str) -> str:
    reason = refusal(value)  # "аnn" with a Cyrillic а is not "ann" (app.names)
    if reason is not None:
        raise ValueError(reason)
    return value


Nickname = Annotated[
    str,
    StringConstraints(
        strip_whitespace=True, min_length=1, max_length=32, pattern=r"^[^\x00-\x1f\x7f]+$"
    ),
    AfterValidator(_one_script),
]
Text = Annotated[str, StringConstraints(min_length=1, max_length=4000)]


class Ping(BaseModel):
    model_config = STRICT
    event: Literal["ping"]


class Since(BaseModel):
    """A position in a room's log: the `epoch` and `offset` of the last message a client has."""

    model_config = STRICT
    # Epochs are hex (app.realtime.rooms.new_epoch); any other text is refused here, before it
    # reaches a key or a script.
    epoch: Annotated[str, StringConstraints(max_length=64, pattern=r"^[A-Za-z0-9_-]*$")]
    offset: Annotated[int, Field(ge=0, le=2**53)]


class Join(BaseModel):
    """Join `room`; anonymous clients give a `nickname` (unique in the room). With `since`, a
    rejoining client gets every message after that position (docs/websockets.md)."""

    model_config = STRICT
    event: Literal["join"]
    room: RoomName
    nickname: Nickname | None = None
    since: Since | None = None
    # The `claim` an anonymous client got in its first `presence_state`: its nickname is its
    # own again at once after a reconnect (without it, only once the old connection is gone).
    claim: Annotated[str, StringConstraints(min_length=16, max_length=64)] | None = None


class Leave(BaseModel):
    model_config = STRICT
    event: Literal["leave"]
    room: RoomName


class Message(BaseModel):
    """A message to the room. With `id` (the sender's, unique among its messages), the sender
    gets an `ack` with the message's offset once it is stored, and a resend with the same id
    while the room's log holds the message is acknowledged again, not published twice."""

    model_config = STRICT
    event: Literal["message"]
    room: RoomName
    text: Text
    id: Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_.:-]{1,64}$")] | None = None


class Private(BaseModel):
    """A message to one name in a room both are in."""

    model_config = STRICT
    event: Literal["private"]
    room: RoomName
    to: Nickname
    text: Text


ChatFrame = TypeAdapter(
    Annotated[Ping | Join | Leave | Message | Private, Field(discriminator="event")]
)


class MonitorFrame(BaseModel):
    model_config = STRICT
    event: Literal["ping", "start", "stop"]


class NicknameChatFrame(BaseModel):
    """The seed's nickname chat: `{"msg"}` to all, with `to_user` or `to_client` to one name."""

    model_config = ConfigDict(strict=True, extra="ignore")
    msg: Annotated[str, StringConstraints(max_length=4000)] | None = None
    to_user: Nickname | None = None
    to_client: Nickname | None = None
    event: Literal["ping"] | None = None


class FrameError(ValueError):
    """A frame that is not valid JSON or does not match its schema; `str()` says why."""


def parse_frame(text: str, adapter: TypeAdapter[Any] | type[BaseModel]) -> Any:
    """Parse a JSON text frame against its schema, with the request bodies' strict parser
    (app.json_provider: no NaN or Infinity, nesting at most 1024 deep, in bounded time).
    Raises `FrameError` naming the field."""
    try:
        data = loads(text)
    except ValueError as error:
        raise FrameError(f"frame is not valid JSON ({error})") from error
    if not isinstance(data, dict):
        raise FrameError("frame must be a JSON object")
    # Any frame may carry a W3C trace context for the server to continue (app.tracing).
    if not isinstance(data.pop("traceparent", ""), str):
        raise FrameError("traceparent: must be a string")
    try:
        if isinstance(adapter, TypeAdapter):
            return adapter.validate_python(data)
        return adapter.model_validate(data)
    except ValidationError as error:
        first = error.errors(include_url=False, include_input=False)[0]
        if first["type"] == "union_tag_not_found":
            raise FrameError("event: required") from error
        location = tuple(first["loc"])
        if isinstance(adapter, TypeAdapter) and location:
            location = location[1:]  # the first element names the union member (the event)
        field = field_name(location) or "frame"
        if first["type"] == "union_tag_invalid" or (field == "event" and "event" in data):
            raise FrameError(f"event: unknown event {data.get('event')!r}") from error
        message = str(first["msg"]).removeprefix("Value error, ")
        raise FrameError(f"{field}: {message}") from error


def timestamp() -> str:
    """Now, ISO 8601 in UTC with milliseconds: "2026-11-21T23:40:00.123Z"."""
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
