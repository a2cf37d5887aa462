"""The second attack run, replayed: hostile websocket frames get an error frame and the socket
lives."""

from __future__ import annotations

import asyncio
import json

import pytest
from websockets.asyncio.client import connect

from tests.e2e.hardening import next_event

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def server(hardening_server):
    return hardening_server


# 4: frames -------------------------------------------------------------------------------

HOSTILE_FRAMES = {"deep": "[" * 5000, "nan": '{"event": "ping", "x": NaN}', "infinity": "[1e999]"}


@pytest.mark.parametrize("kind", sorted(HOSTILE_FRAMES))
@pytest.mark.parametrize("path", ["/ws/chat", "/websocket/mallory", "/ws"])
def test_hostile_json_frames_get_an_error_frame_and_the_socket_lives(server, path, kind) -> None:
    async def scenario() -> tuple[dict, dict]:
        url = server.base_url.replace("http://", "ws://") + path
        async with connect(url, origin=server.base_url, compression=None) as ws:
            if path == "/ws":
                assert json.loads(await ws.recv())["event"] == "connect"
            await ws.send(HOSTILE_FRAMES[kind])
            error = await next_event(ws, "error")
            await ws.send(json.dumps({"event": "ping"}))
            return error, await next_event(ws, "pong")

    error, pong = asyncio.run(scenario())
    assert error["msg"].startswith("frame is not valid JSON"), error
    assert pong == {"event": "pong"}
    assert "RecursionError" not in server.log() and "Traceback" not in server.log()
