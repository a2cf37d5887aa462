"""Frame schemas and the handshake's Origin rule."""

from __future__ import annotations

import pytest

from app.realtime.protocol import ChatFrame, FrameError, Join, Message, parse_frame
from app.ws.handshake import origin_allowed


@pytest.mark.parametrize(
    ("text", "error"),
    [
        ("not json", "frame is not valid JSON"),
        ("[1]", "frame must be a JSON object"),
        ("{}", "event: required"),
        ('{"event": "dance"}', "event: unknown event 'dance'"),
        ('{"event": "join"}', "room: Field required"),
        ('{"event": "join", "room": "a b"}', "room: String should match pattern"),
        ('{"event": "message", "room": "a", "text": ""}', "text: String should have at least 1"),
        ('{"event": "message", "room": "a", "text": 5}', "text: Input should be a valid string"),
        ('{"event": "private", "room": "a", "text": "x"}', "to: Field required"),
        ('{"event": "join", "room": "a", "extra": 1}', "extra: Extra inputs are not permitted"),
        ('{"event": "ping", "traceparent": 1}', "traceparent: must be a string"),
    ],
)
def test_bad_frames_name_the_field(text, error) -> None:
    with pytest.raises(FrameError) as raised:
        parse_frame(text, ChatFrame)
    assert str(raised.value).startswith(error)


def test_good_frames() -> None:
    assert parse_frame('{"event":"join","room":"lobby","nickname":" ann "}', ChatFrame) == Join(
        event="join", room="lobby", nickname="ann"
    )
    assert isinstance(parse_frame('{"event":"message","room":"x","text":"hi"}', ChatFrame), Message)
    # Any frame may carry a trace context for the server (app.tracing); the schema never sees it.
    traced = '{"event":"message","room":"x","text":"hi","traceparent":"00-ab-cd-01"}'
    assert parse_frame(traced, ChatFrame) == Message(event="message", room="x", text="hi")


@pytest.mark.parametrize(
    ("origin", "allowed", "expected"),
    [
        (None, [], True),  # not a browser
        ("http://svc.test:8000", [], True),
        ("http://evil.test", [], False),
        ("https://svc.test:8000", [], False),  # other scheme, other origin
        ("https://app.example", ["https://app.example"], True),
        ("http://svc.test:8000", ["https://app.example"], False),
    ],
)
def test_origin_rule(origin, allowed, expected) -> None:
    assert origin_allowed(origin, host="svc.test:8000", scheme="ws", allowed=allowed) is expected
