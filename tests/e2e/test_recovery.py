"""Resumable rooms on a real service (2 Hypercorn workers, MariaDB, Redis): a client that loses
its connection rejoins from its last log position and gets exactly what it missed; one whose
position has left the log, or whose epoch is gone (Redis flushed), is told it could not."""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import time

import pytest
from redis import Redis
from websockets.asyncio.client import ClientConnection, connect

from app.keyspace import Keyspace
from tests.conftest import REDIS_URL
from tests.e2e.server import RunningServer, prepare_deployment, run_server, workers_of
from tests.waiting import eventually

pytestmark = pytest.mark.e2e
OPENED = re.compile(r"\[(\d+)\] websocket /ws/chat opened id=")


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    env = prepare_deployment(
        tmp_path_factory.mktemp("recovery-setup"),
        "recovery",
        ("root", "recovery-admin-password"),
        REDIS_URL=REDIS_URL,
        CHAT_HISTORY="40",
        WS_RATE_LIMIT="2000/second",
    )
    with run_server(tmp_path_factory.mktemp("recovery"), env, workers=2) as running:
        yield running


def ws_url(server: RunningServer) -> str:
    return server.base_url.replace("http://", "ws://") + "/ws/chat"


async def open_on(
    server: RunningServer, *, not_on: str | None = None
) -> tuple[ClientConnection, str]:
    """A connection and the pid of the worker it landed on (from the server's log); with
    `not_on`, one on the other worker (connections are opened until one lands there)."""
    for _ in range(100):
        before = len(OPENED.findall(server.log()))
        ws = await connect(ws_url(server), compression=None)

        async def logged(before: int = before) -> bool:
            return len(OPENED.findall(server.log())) > before

        await eventually(logged, timeout=5, interval=0.02)
        pid = OPENED.findall(server.log())[before]
        if pid != not_on:
            return ws, pid
        await ws.close()
    raise AssertionError("no connection landed on the other worker")


async def frame(ws: ClientConnection, event: str) -> dict:
    while True:
        received = json.loads(await asyncio.wait_for(ws.recv(), 10))
        if received["event"] == event:
            return received


async def join(
    ws: ClientConnection,
    room: str,
    nickname: str,
    since: dict | None = None,
    claim: str | None = None,
    states: list[dict] | None = None,
) -> dict:
    """Join and return the `history` (the `presence_state` before it goes to `states`)."""
    request = {"event": "join", "room": room, "nickname": nickname}
    if since is not None:
        request["since"] = since
    if claim is not None:
        request["claim"] = claim
    await ws.send(json.dumps(request))
    state = json.loads(await asyncio.wait_for(ws.recv(), 10))
    assert state["event"] == "presence_state", state
    if states is not None:
        states.append(state)
    history = json.loads(await asyncio.wait_for(ws.recv(), 10))
    assert history["event"] == "history", history
    return history


def abort(ws: ClientConnection) -> None:
    """Drop the TCP connection with no close frame, as a phone changing networks does."""
    ws.transport.abort()


def test_a_client_that_lost_its_connection_gets_exactly_what_it_missed(server) -> None:
    async def scenario() -> None:
        reader, reader_pid = await open_on(server)
        sender, _ = await open_on(server, not_on=reader_pid)  # the messages come from the other
        await join(reader, "resume", "reader")
        await join(sender, "resume", "sender")
        await sender.send(json.dumps({"event": "message", "room": "resume", "text": "seen"}))
        seen = await frame(reader, "message")
        assert (await frame(sender, "message"))["offset"] == seen["offset"]  # the sender's copy
        position = {"epoch": seen["epoch"], "offset": seen["offset"]}
        abort(reader)
        sent = []
        for number in range(30):
            await sender.send(
                json.dumps({"event": "message", "room": "resume", "text": f"m{number}"})
            )
            sent.append(await frame(sender, "message"))
        back, _ = await open_on(server)
        history = await join(back, "resume", "reader", since=position)
        assert history["recovered"] is True
        assert [m["text"] for m in history["messages"]] == [f"m{number}" for number in range(30)]
        assert [m["offset"] for m in history["messages"]] == [m["offset"] for m in sent]
        assert history["offset"] == sent[-1]["offset"] and history["epoch"] == position["epoch"]
        await sender.send(json.dumps({"event": "message", "room": "resume", "text": "live"}))
        live = await frame(back, "message")
        assert live["text"] == "live" and live["offset"] == sent[-1]["offset"] + 1

        # A position older than the log (it keeps 40; 15 more push the first ones out): told,
        # with the latest messages.
        for number in range(15):
            await sender.send(
                json.dumps({"event": "message", "room": "resume", "text": f"n{number}"})
            )
            await frame(sender, "message")
        late, _ = await open_on(server)
        stale = await join(late, "resume", "late", since=position)
        assert stale["recovered"] is False and len(stale["messages"]) == 40
        assert stale["messages"][-1]["offset"] == stale["offset"] == live["offset"] + 15
        for ws in (back, sender, late):
            await ws.close()

    asyncio.run(scenario())


def test_after_the_log_is_lost_a_rejoin_gets_a_new_epoch_and_is_told(server) -> None:
    async def scenario() -> None:
        first, _ = await open_on(server)
        await join(first, "flushed", "first")
        await first.send(json.dumps({"event": "message", "room": "flushed", "text": "before"}))
        before = await frame(first, "message")
        await first.close()
        Redis.from_url(REDIS_URL).flushdb()  # the room's log and meta are gone
        sender, _ = await open_on(server)
        await join(sender, "flushed", "sender")
        await sender.send(json.dumps({"event": "message", "room": "flushed", "text": "after"}))
        after = await frame(sender, "message")
        assert after["epoch"] != before["epoch"] and after["offset"] == 1
        back, _ = await open_on(server)
        history = await join(
            back, "flushed", "first", since={"epoch": before["epoch"], "offset": before["offset"]}
        )
        assert history["recovered"] is False and history["epoch"] == after["epoch"]
        assert [m["text"] for m in history["messages"]] == ["after"]
        for ws in (sender, back):
            await ws.close()

    asyncio.run(scenario())


# The soak: 50 clients on 2 workers, connections dropped at random, workers restarted and killed


class SoakClient:
    """A chat client that sends now and then, drops its connection at random, and on every
    reconnect rejoins from its last position, recording every message as received (no
    de-duplication here: the server's guarantee is under test)."""

    def __init__(self, number: int, url: str) -> None:
        self.name = f"soak{number}"
        self.url = url
        self.start: tuple[str, int] | None = None  # the position of its first join
        self.position: dict | None = None
        self.received: list[tuple[str, int]] = []
        self.reconnects = 0
        self.recoveries = 0
        self.claim: str | None = None  # owns its nickname across reconnects
        self.joined = asyncio.Event()

    async def run(self, stop: asyncio.Event, sending: asyncio.Event, rng) -> None:
        import websockets

        while not stop.is_set():
            try:
                async with connect(self.url, compression=None, open_timeout=10) as ws:
                    await self.session(ws, stop, sending, rng)
            except (OSError, websockets.exceptions.WebSocketException, TimeoutError):
                pass
            if not stop.is_set():
                self.reconnects += 1
                await asyncio.sleep(rng.uniform(0.05, 0.5))

    async def session(self, ws, stop: asyncio.Event, sending: asyncio.Event, rng) -> None:
        states: list[dict] = []
        history = await join(ws, "soak", self.name, self.position, self.claim, states)
        self.claim = states[0]["claim"]
        if self.start is None:
            self.start = (history["epoch"], history["offset"])
        else:
            self.recoveries += history["recovered"]
            assert history["recovered"], history
            self.received += [(m["epoch"], m["offset"]) for m in history["messages"]]
        self.position = {"epoch": history["epoch"], "offset": history["offset"]}
        self.joined.set()
        next_send = time.monotonic() + rng.uniform(0.5, 3)
        drop_at = time.monotonic() + rng.uniform(2, 20)
        while not stop.is_set():
            try:
                raw = await asyncio.wait_for(ws.recv(), 0.2)
            except TimeoutError:
                raw = None
            if raw is not None:
                received = json.loads(raw)
                if received["event"] == "message":
                    self.received.append((received["epoch"], received["offset"]))
                    self.position = {"epoch": received["epoch"], "offset": received["offset"]}
            now = time.monotonic()
            if sending.is_set() and now >= next_send:
                await ws.send(json.dumps({"event": "message", "room": "soak", "text": self.name}))
                next_send = now + rng.uniform(1, 4)
            if sending.is_set() and now >= drop_at:
                abort(ws)  # the TCP connection dropped, no close frame
                return


@pytest.mark.long(65)
@pytest.mark.soak
def test_soak_every_client_receives_the_room_exactly_once_in_order(tmp_path) -> None:
    """50 clients for 60 s on 2 workers: each sends now and then and drops its connection at
    random; every 12 s a worker is restarted (SIGTERM: its clients get 1001), and once one is
    SIGKILLed and replaced. At the end, every client's received sequence from its first join
    equals the room's log over that span: no gap, no duplicate, in order."""
    import os
    import random
    import signal

    env = prepare_deployment(
        tmp_path,
        "soak",
        ("root", "soak-admin-password"),
        REDIS_URL=REDIS_URL,
        CHAT_HISTORY="10000",  # everything stays in the log: the test compares against it
        WS_RATE_LIMIT="2000/second",
    )
    rng = random.Random(20261129)
    with run_server(tmp_path, env, workers=2) as server:

        async def scenario() -> list[SoakClient]:
            seed, _ = await open_on(server)
            await join(seed, "soak", "seed")
            await seed.send(json.dumps({"event": "message", "room": "soak", "text": "first"}))
            await frame(seed, "message")
            await seed.close()
            clients = [SoakClient(number, ws_url(server)) for number in range(50)]
            stop, sending = asyncio.Event(), asyncio.Event()
            tasks = [asyncio.create_task(c.run(stop, sending, rng)) for c in clients]
            await asyncio.wait_for(asyncio.gather(*(c.joined.wait() for c in clients)), 60)
            sending.set()

            started = time.monotonic()
            killed = False
            while time.monotonic() - started < 60:
                await asyncio.sleep(12)
                victims = workers_of(server.process.pid)
                if victims and not killed and time.monotonic() - started > 30:
                    os.kill(rng.choice(victims).pid, signal.SIGKILL)
                    killed = True
                elif victims:
                    os.kill(rng.choice(victims).pid, signal.SIGTERM)
            sending.clear()
            # Quiet: every client rejoins and catches up to the log's end.
            top = lambda: int(Redis.from_url(REDIS_URL).hget(SOAK_KEYS.meta, "top") or 0)  # noqa: E731

            async def caught_up() -> bool:
                final = top()
                return all(c.received and c.received[-1][1] == final for c in clients)

            with contextlib.suppress(AssertionError):  # the assertions below say who lags
                await eventually(caught_up, timeout=60, interval=0.5)
            stop.set()
            await asyncio.gather(*tasks)
            assert killed
            return clients

        clients = asyncio.run(scenario())
    log = Redis.from_url(REDIS_URL).xrange(SOAK_KEYS.log)
    room = [
        (json.loads(fields[b"m"])["epoch"], json.loads(fields[b"m"])["offset"]) for _, fields in log
    ]
    assert [offset for _, offset in room] == list(range(1, len(room) + 1))
    for client in clients:
        assert client.start is not None
        expected = [entry for entry in room if entry[1] > client.start[1]]
        assert client.received == expected, (client.name, len(client.received), len(expected))
    print(
        f"soak: {len(room)} messages, {sum(c.reconnects for c in clients)} reconnects, "
        f"{sum(c.recoveries for c in clients)} recoveries, 50 clients all exactly once in order"
    )


SOAK_KEYS = Keyspace().room("soak")  # the tests' deployment has no REDIS_KEY_PREFIX
