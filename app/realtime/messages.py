"""The shapes of what the hub fans out: an audience and the message that carries a frame to it
(through Redis pub/sub as JSON, or in process)."""

from __future__ import annotations

from typing import Any, Literal, NotRequired, TypedDict


class ToEndpoint(TypedDict):
    """Every connection of an endpoint (`relay`, `nickname`, `chat`, `monitor`)."""

    kind: Literal["endpoint"]
    endpoint: str


class ToRoom(TypedDict):
    """Every connection in a chat room."""

    kind: Literal["room"]
    room: str


class ToNames(TypedDict):
    """The connections named `names`, in `room` or else on `endpoint` (private messages)."""

    kind: Literal["names"]
    names: list[str]
    room: NotRequired[str]
    endpoint: NotRequired[str]


Audience = ToEndpoint | ToRoom | ToNames


class BrokerMessage(TypedDict):
    """What crosses the broker (Redis pub/sub as JSON, or in process): a frame and its audience;
    `skip` is a connection id that must not receive it (the sender's, for some frames);
    `trace` is the W3C `traceparent` of the publish span, when it was sampled (app.tracing);
    `intercept` names the outgoing filter each receiver's copy goes through
    (`Hub.intercepts`, as Phoenix's `intercept` and `handle_out`)."""

    to: Audience
    frame: dict[str, Any] | str
    skip: str | None
    trace: NotRequired[str]
    intercept: NotRequired[str]
