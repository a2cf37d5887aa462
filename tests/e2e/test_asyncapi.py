"""/asyncapi.json (issue 35): it validates with @asyncapi/parser, and every example client
frame it gives, sent to a real server, is served with frames the document describes (each
frame a `websockets` client receives in the e2e tests is checked: tests/frame_validation.py)."""

from __future__ import annotations

import asyncio
import json
import subprocess
from pathlib import Path

import httpx
from websockets.asyncio.client import connect

from tests import frame_validation
from tests.e2e.server import run_cli, run_server

JS = Path(__file__).parents[2] / "clients" / "js"


def examples(document: dict, channel: str) -> list:
    """The channel's client examples, in the document's order of its `receive` messages."""
    operation = document["operations"][f"{channel}Receive"]
    payloads = []
    for reference in operation["messages"]:
        name = reference["$ref"].rsplit("/", 1)[1]
        message = document["components"]["messages"][name]
        payloads += [example["payload"] for example in message.get("examples", [])]
    return payloads


async def until(ws, wanted) -> list:
    """Frames received until one for which `wanted(frame)` holds (that one included)."""
    frames = []
    while True:
        raw = await asyncio.wait_for(ws.recv(), 10)
        frame = json.loads(raw) if raw[:1] in "{[" else raw
        frames.append(frame)
        if wanted(frame):
            return frames


def is_event(name: str):
    return lambda frame: isinstance(frame, dict) and frame.get("event") == name


def test_the_document_validates_and_its_examples_are_served_as_described(tmp_path) -> None:
    assert (JS / "node_modules" / ".installed").exists(), "run `make test` (npm ci in clients/js)"
    env = {"DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path / 'app.db'}", "APP_ENV": "development"}
    run_cli(tmp_path, env, ["init-db"])
    with run_server(tmp_path, env, ready_path="/healthz") as server:
        response = httpx.get(f"{server.base_url}/asyncapi.json", timeout=10)
        assert response.status_code == 200
        document = response.json()
        (tmp_path / "asyncapi.json").write_text(response.text)
        parsed = subprocess.run(
            ["node", JS / "validate-asyncapi.mjs", tmp_path / "asyncapi.json"],
            cwd=JS, capture_output=True, text=True, timeout=120,
        )  # fmt: skip
        assert parsed.returncode == 0, parsed.stdout + parsed.stderr
        assert parsed.stdout.strip().endswith("parsed")
        assert document["asyncapi"].startswith("3.0")
        assert set(document["channels"]) == {"chat", "monitor", "relay", "nickname"}
        assert document["channels"]["chat"]["x-close-codes"]["1013"]

        ws = server.base_url.replace("http://", "ws://")
        before = frame_validation.checked["frames"]

        async def chat() -> list:
            async with connect(f"{ws}/ws/chat") as bob, connect(f"{ws}/ws/chat") as ann:
                await bob.send(json.dumps({"event": "join", "room": "lobby", "nickname": "bob"}))
                await until(bob, is_event("history"))
                frames = []
                for payload in examples(document, "chat"):
                    await ann.send(json.dumps(payload))
                    if payload["event"] == "join":
                        frames += await until(ann, is_event("history"))
                await ann.send(json.dumps({"event": "ping"}))
                frames += await until(ann, is_event("left"))
                frames += await until(bob, is_event("private"))
                return frames

        async def monitor() -> list:
            async with connect(f"{ws}/ws") as client:
                for payload in examples(document, "monitor"):
                    await client.send(json.dumps(payload))
                return await until(client, is_event("server_response"))

        async def relay() -> list:
            async with connect(f"{ws}/websocket") as client:
                for payload in examples(document, "relay"):
                    await client.send(payload)
                return await until(client, lambda frame: frame == "hello, everyone")

        async def nickname() -> list:
            async with connect(f"{ws}/websocket/bob") as bob, connect(f"{ws}/websocket/ann") as ann:
                for payload in examples(document, "nickname"):
                    await ann.send(json.dumps(payload))
                frames = await until(ann, is_event("pong"))
                return frames + await until(bob, lambda frame: "from_user" in frame)

        served = {
            name: asyncio.run(scenario())
            for name, scenario in (
                ("chat", chat), ("monitor", monitor), ("relay", relay), ("nickname", nickname)
            )
        }  # fmt: skip
    errors = [
        frame
        for frames in served.values()
        for frame in frames
        if isinstance(frame, dict) and frame.get("event") == "error"
    ]
    assert errors == [], errors  # every example is a frame the service takes
    events = {frame.get("event") for frame in served["chat"] if isinstance(frame, dict)}
    assert {"presence_state", "history", "message", "ack", "private", "left"} <= events
    assert any(frame.get("event") == "pong" for frame in served["nickname"])
    assert frame_validation.checked["frames"] - before >= sum(map(len, served.values()))
