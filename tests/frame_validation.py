"""Every frame the service sends to a `websockets` client in the e2e tests is checked against
the AsyncAPI document's schemas for its endpoint (issue 35: 100% of the server frames seen in
the e2e websocket tests validate). tests/e2e/conftest.py wraps the clients' `recv`; a frame
that fits none of its channel's server messages fails the test that received it."""

from __future__ import annotations

import json
import re
from functools import cache
from typing import Any

from jsonschema import Draft202012Validator

from app.realtime.asyncapi import CHANNELS, RelayedText, asyncapi_document

checked = {"frames": 0}


@cache
def validator_for(path: str) -> Draft202012Validator | None:
    """The validator of the frames the service sends on `path`; None for another server's."""
    document = asyncapi_document()
    for _name, address, _description, _client, server_frames in CHANNELS:
        if re.fullmatch(re.escape(address).replace(r"\{nickname\}", "[^/]+"), path):
            schemas = [
                {"$ref": f"#/components/schemas/{model.__name__}"}
                for model in server_frames
                if model is not RelayedText
            ]
            relays_text = RelayedText in server_frames
            schema: dict[str, Any] = {"components": document["components"], "anyOf": schemas}
            return None if relays_text else Draft202012Validator(schema)
    return None


def check_server_frame(path: str, data: Any) -> None:
    """Raise AssertionError when `data`, sent by the service on `path`, fits no server message
    of that channel in /asyncapi.json (the relay's text and other servers' frames pass)."""
    validator = validator_for(path.split("?", 1)[0])
    if validator is None or not isinstance(data, str):
        return
    checked["frames"] += 1
    try:
        frame = json.loads(data)
    except ValueError:
        raise AssertionError(
            f"{path}: the service sent a frame that is not JSON: {data[:200]!r}"
        ) from None
    errors = [error.message for error in validator.iter_errors(frame)]
    assert not errors, (
        f"{path}: a frame the AsyncAPI document does not describe: {frame} ({errors})"
    )
