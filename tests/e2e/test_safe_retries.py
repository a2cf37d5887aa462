"""Safe retries against a production-mode service (2 Hypercorn workers) on a MariaDB of its own:
a client that resends a `POST` with its `Idempotency-Key` after every 503, 409, timeout or lost
connection ends with exactly one row per key, and every answer it gets is the stored one,
across a MariaDB SIGKILL and restart (issue 33: 8 blogs were stored twice without the key).
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import time
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake

from tests.e2e.dependencies import OwnServer, own_mariadb, own_redis
from tests.e2e.server import RunningServer, run_server
from tests.e2e.test_faults import bearer_token, deployment_env, prepare
from tests.waiting import eventually

OPENED = re.compile(r"\[(\d+)\] websocket /ws/chat opened id=")


async def open_on(server: RunningServer, url: str):
    """A connection and the pid of the worker it landed on (from the server's access log)."""
    before = len(OPENED.findall(server.log()))
    ws = await connect(url, open_timeout=30)

    async def logged() -> bool:
        return len(OPENED.findall(server.log())) > before

    await eventually(logged, timeout=10, interval=0.02)
    return ws, OPENED.findall(server.log())[before]


RETRY_WITHIN = 90.0  # seconds a client keeps retrying one write (a restart included)


@pytest.fixture
def stack(tmp_path: Path) -> Iterator[tuple[RunningServer, OwnServer]]:
    with own_mariadb(tmp_path) as mariadb, own_redis(tmp_path) as redis:
        env = deployment_env(mariadb, redis)
        prepare(tmp_path, env, mariadb)
        with run_server(tmp_path, env, workers=2, ready_path="/healthz") as server:
            yield server, mariadb


class Writer:
    """A client that writes blogs with keys and resends each until it gets a 2xx."""

    def __init__(self, server: RunningServer) -> None:
        self.headers = bearer_token(server)
        me = httpx.get(f"{server.base_url}/api/v1/me", headers=self.headers, timeout=10)
        self.user_id = me.json()["data"]["id"]
        self.base_url = server.base_url
        self.answers: defaultdict[str, list[httpx.Response]] = defaultdict(list)
        self.retried = 0

    def body(self, key: str) -> dict:
        return {"title": key, "context": f"once under {key}", "user_id": self.user_id, "tags": []}

    async def write(self, http: httpx.AsyncClient, key: str) -> httpx.Response:
        deadline = time.monotonic() + RETRY_WITHIN
        while True:
            assert time.monotonic() < deadline, f"{key}: no 2xx within {RETRY_WITHIN} s"
            try:
                response = await http.post(
                    "/api/v1/blog",
                    json=self.body(key),
                    headers={**self.headers, "Idempotency-Key": key},
                )
            except httpx.TransportError:  # a timeout, a reset, a refused connection
                self.retried += 1
                await asyncio.sleep(0.2)  # the client's back-off before it resends (behaviour)
                continue
            if response.status_code in (409, 429, 503):
                self.retried += 1
                # It honours Retry-After (capped): the retry policy under test.
                await asyncio.sleep(min(float(response.headers.get("Retry-After", "1")), 0.5))
                continue
            assert response.status_code == 200, response.text
            self.answers[key].append(response)
            return response


def stored_blogs(mariadb: OwnServer) -> list[tuple[str, str]]:
    rows = mariadb.sql("SELECT title, id FROM faults.blogs").splitlines()
    return [tuple(row.split("\t")) for row in rows]  # type: ignore[misc]


def assert_one_row_per_key_and_stored_answers(
    writer: Writer, mariadb: OwnServer, keys: list[str]
) -> None:
    rows = stored_blogs(mariadb)
    titles = [title for title, _ in rows]
    duplicated = {title for title in titles if titles.count(title) > 1}
    assert not duplicated, f"stored twice: {sorted(duplicated)[:10]}"
    assert sorted(titles) == sorted(keys), "lost or unexpected writes"
    row_id = dict(rows)
    for key in keys:
        bodies = {answer.content for answer in writer.answers[key]}
        assert len(bodies) == 1, f"{key}: different answers {bodies}"
        assert json.loads(next(iter(bodies)))["data"]["id"] == row_id[key]


def test_the_same_post_twice_and_ten_times_at_once_stores_one_blog(stack) -> None:
    server, mariadb = stack
    writer = Writer(server)

    async def run() -> None:
        async with httpx.AsyncClient(base_url=server.base_url, timeout=10) as http:
            await writer.write(http, "twice")
            replay = await writer.write(http, "twice")
            assert replay.headers["Idempotent-Replayed"] == "true"
            # New connections for each: the ten land on both workers.
            clients = [httpx.AsyncClient(base_url=server.base_url, timeout=10) for _ in range(10)]
            try:
                await asyncio.gather(*(writer.write(client, "at-once") for client in clients))
            finally:
                await asyncio.gather(*(client.aclose() for client in clients))

    asyncio.run(run())
    assert len(writer.answers["twice"]) == 2 and len(writer.answers["at-once"]) == 10
    assert_one_row_per_key_and_stored_answers(writer, mariadb, ["twice", "at-once"])
    replayed = sum(
        a.headers.get("Idempotent-Replayed") == "true" for a in writer.answers["at-once"]
    )
    assert replayed == 9, replayed  # one ran; the nine others were told the stored answer


@pytest.mark.long(20)
def test_a_thousand_keys_across_a_mariadb_kill_store_each_blog_once(stack) -> None:
    """50 clients write 1,000 keyed blogs, each resent once more after its 2xx (a lost
    answer); MariaDB is SIGKILLed a third of the way in and restarted a second later."""
    server, mariadb = stack
    writer = Writer(server)
    keys = [f"key-{n:04d}" for n in range(1000)]
    done = 0
    third_done = asyncio.Event()

    async def client(queue: asyncio.Queue[str]) -> None:
        nonlocal done
        async with httpx.AsyncClient(base_url=server.base_url, timeout=5) as http:
            while not queue.empty():
                key = queue.get_nowait()
                await writer.write(http, key)
                await writer.write(http, key)  # the resend of an answer the client lost
                done += 1
                if done >= len(keys) // 3:
                    third_done.set()

    async def crash_once() -> None:
        await third_done.wait()
        await asyncio.to_thread(mariadb.kill)
        await asyncio.sleep(1)  # the outage lasts a second: the fault under test
        await asyncio.to_thread(mariadb.start)

    async def run() -> None:
        queue: asyncio.Queue[str] = asyncio.Queue()
        for key in keys:
            queue.put_nowait(key)
        await asyncio.gather(crash_once(), *(client(queue) for _ in range(50)))

    started = time.monotonic()
    asyncio.run(run())
    took = time.monotonic() - started
    assert mariadb.history[-2:] == ["killed", "started"]
    assert_one_row_per_key_and_stored_answers(writer, mariadb, keys)
    replays = sum(
        answer.headers.get("Idempotent-Replayed") == "true"
        for answers in writer.answers.values()
        for answer in answers
    )
    assert replays >= len(keys)  # every resend at least
    print(
        f"\nSAFE RETRIES: 1,000 keys, 50 clients, MariaDB killed and restarted: 0 duplicates, "
        f"0 lost; {writer.retried} retries after 503/409/timeouts, {replays} replays, {took:.1f}s"
    )


def test_conditional_requests_across_workers(stack) -> None:
    """304 for a current If-None-Match, 412 for a stale If-Match, and of 10 writers holding one
    ETag (new connections: both workers, each its own database connection) exactly one wins;
    for a blog, and for a scheduler job."""
    server, _ = stack
    writer = Writer(server)
    with httpx.Client(base_url=server.base_url, headers=writer.headers, timeout=10) as http:
        created = http.post("/api/v1/blog", json=writer.body("conditional"))
        assert created.status_code == 200 and created.headers["ETag"] == '"1"'
        path = f"/api/v1/blog/{created.json()['data']['id']}"
        for _ in range(6):
            unchanged = http.get(path, headers={"If-None-Match": '"1"', "Connection": "close"})
            assert unchanged.status_code == 304 and unchanged.content == b""
        body = {"title": "first", "context": "C", "tags": []}
        assert http.put(path, json=body, headers={"If-Match": '"1"'}).status_code == 200
        stale = http.put(path, json={**body, "title": "lost"}, headers={"If-Match": '"1"'})
        assert stale.status_code == 412, stale.text
        assert http.get(path, headers={"If-None-Match": '"1"'}).status_code == 200

    async def race(target: str, method: str, body: dict, etag: str = '"2"') -> list[int]:
        async def one() -> int:
            async with httpx.AsyncClient(
                base_url=server.base_url, headers=writer.headers, timeout=10
            ) as http:
                response = await http.request(method, target, json=body, headers={"If-Match": etag})
                return response.status_code

        return list(await asyncio.gather(*(one() for _ in range(10))))

    statuses = asyncio.run(race(path, "put", {"title": "writer", "context": "C", "tags": []}))
    assert sorted(statuses) == [200] + [412] * 9, statuses
    final = httpx.get(f"{server.base_url}{path}", timeout=10)
    assert final.headers["ETag"] == '"3"' and final.json()["data"]["title"].startswith("writer")

    # The scheduler's jobs, in the job store both workers share (Redis).
    job = {"id": "etag", "func": "app.scheduler.jobs:print_test", "trigger": "interval"}
    with httpx.Client(base_url=server.base_url, headers=writer.headers, timeout=10) as http:
        added = http.post("/scheduler/jobs", json={**job, "minutes": 5})
        assert added.status_code == 200, added.text
        etag = added.headers["ETag"]
        for _ in range(6):
            unchanged = http.get(
                "/scheduler/jobs/etag", headers={"If-None-Match": etag, "Connection": "close"}
            )
            assert unchanged.status_code == 304 and unchanged.content == b""
        renamed = http.patch("/scheduler/jobs/etag", json={"name": "a"}, headers={"If-Match": etag})
        assert renamed.status_code == 200 and renamed.headers["ETag"] != etag
        stale = http.delete("/scheduler/jobs/etag", headers={"If-Match": etag})
        assert stale.status_code == 412, stale.text
        etag = renamed.headers["ETag"]
    statuses = asyncio.run(race("/scheduler/jobs/etag", "patch", {"name": "b"}, etag))
    assert sorted(statuses) == [200] + [412] * 9, statuses


ACK_ROOM = "acks"
ACK_MESSAGES = 120


@pytest.fixture
def chat_stack(tmp_path: Path) -> Iterator[RunningServer]:
    with own_mariadb(tmp_path) as mariadb, own_redis(tmp_path) as redis:
        env = deployment_env(mariadb, redis, CHAT_HISTORY="1000", WS_RATE_LIMIT="5000/second")
        prepare(tmp_path, env, mariadb)
        with run_server(tmp_path, env, workers=2, ready_path="/healthz") as server:
            yield server


class Receiver:
    """A room member that rejoins from its last offset whenever its connection drops."""

    def __init__(self, url: str, name: str) -> None:
        self.url, self.name = url, name
        self.offsets: list[int] = []
        self.texts: list[str] = []
        self.epoch: str | None = None
        self.claim: str | None = None

    def take(self, message: dict) -> None:
        self.epoch = message["epoch"]
        self.offsets.append(message["offset"])
        self.texts.append(message["text"])

    async def run(self, ready: asyncio.Event) -> None:
        while True:
            try:
                async with connect(self.url, open_timeout=30) as ws:
                    join = {"event": "join", "room": ACK_ROOM, "nickname": self.name}
                    if self.epoch is not None:
                        join["since"] = {"epoch": self.epoch, "offset": self.offsets[-1]}
                    if self.claim is not None:
                        join["claim"] = self.claim
                    await ws.send(json.dumps(join))
                    async for raw in ws:
                        frame = json.loads(raw)
                        if frame["event"] == "presence_state":
                            self.claim = frame["claim"]
                        elif frame["event"] == "history":
                            if self.epoch is not None:
                                assert frame["recovered"], frame  # the log holds 1,000
                            for message in frame["messages"]:  # none at the first join
                                self.take(message)
                            ready.set()
                        elif frame["event"] == "message":
                            self.take(frame)
                        if len(set(self.texts)) >= ACK_MESSAGES:
                            return
            except (ConnectionClosed, OSError, TimeoutError, InvalidHandshake):
                # Its worker was killed: the client's reconnect back-off, then a rejoin from
                # the last offset (a refused connect would otherwise spin).
                await asyncio.sleep(0.1)


def test_a_sender_that_resends_unacked_messages_across_a_worker_kill_publishes_each_once(
    chat_stack,
) -> None:
    """Issue 33: a message sent just before its worker died vanished without an error (2 of
    2,000), and a resend duplicated. Now the sender resends every message it has not seen
    acknowledged, with the same id, after its worker is SIGKILLed: each is in the room once,
    and every receiver's offsets run 1, 2, 3, ... without a gap."""
    server = chat_stack
    url = server.base_url.replace("http://", "ws://") + "/ws/chat"
    receivers = [Receiver(url, f"receiver-{n}") for n in range(3)]
    acked: dict[str, int] = {}
    lost_acks: dict[str, int] = {}
    state = {"claim": None, "killed": False, "connections": 0, "duplicates": 0, "errors": 0}

    async def send_all() -> None:
        ids = [f"m-{n:03d}" for n in range(ACK_MESSAGES)]

        async def send(ws, message_id: str) -> None:
            message = {"event": "message", "room": ACK_ROOM, "text": message_id}
            await ws.send(json.dumps({**message, "id": message_id}))

        while len(acked) < len(ids):
            try:
                ws, pid = await open_on(server, url)
            except (OSError, TimeoutError, InvalidHandshake):
                await asyncio.sleep(0.1)  # the sender's reconnect back-off (behaviour)
                continue
            state["connections"] += 1
            try:
                join = {"event": "join", "room": ACK_ROOM, "nickname": "sender"}
                if state["claim"] is not None:
                    join["claim"] = state["claim"]
                await ws.send(json.dumps(join))
                for message_id in ids:
                    if message_id not in acked:
                        await send(ws, message_id)
                async for raw in ws:
                    frame = json.loads(raw)
                    if frame["event"] == "presence_state":
                        state["claim"] = frame["claim"]
                    elif frame["event"] == "ack":
                        state["duplicates"] += frame["duplicate"]
                        acked[frame["id"]] = frame["offset"]
                        if len(acked) == 30 and not state["killed"]:
                            state["killed"] = True
                            os.kill(int(pid), signal.SIGKILL)  # mid-stream, acks in flight
                            ws.transport.abort()  # the acks still buffered are lost with it
                            # ...and, as if lost in transit, the last 10 it read: their
                            # messages are stored, so their resends must be duplicates.
                            for lost in list(acked)[-10:]:
                                lost_acks[lost] = acked.pop(lost)
                            break
                    elif frame["event"] == "error":
                        assert frame.get("id"), frame  # a failed publish names its message
                        state["errors"] += 1
                        await send(ws, frame["id"])  # the client's policy: resend it
                    if len(acked) == len(ids):
                        return
            except (ConnectionClosed, OSError, TimeoutError):
                await asyncio.sleep(0.1)  # the sender's reconnect back-off (behaviour)
            finally:
                await ws.close()

    async def run() -> None:
        # Every receiver has joined before the first message (one that joined later would
        # miss the messages before its join: the failure of an earlier version of this test).
        joined = [asyncio.Event() for _ in receivers]
        tasks = [
            asyncio.create_task(r.run(ready)) for r, ready in zip(receivers, joined, strict=True)
        ]
        await asyncio.wait_for(asyncio.gather(*(ready.wait() for ready in joined)), 30)
        await asyncio.wait_for(send_all(), 90)
        await asyncio.wait_for(asyncio.gather(*tasks), 60)

    asyncio.run(run())
    assert state["killed"]
    assert state["duplicates"] >= len(lost_acks) == 10
    assert all(acked[message_id] == offset for message_id, offset in lost_acks.items())
    offsets = sorted(acked.values())
    assert len(set(offsets)) == ACK_MESSAGES, "two ids acknowledged with one offset"
    for receiver in receivers:
        first = receiver.offsets[0]
        assert receiver.offsets == list(range(first, first + len(receiver.offsets))), "a gap"
        assert sorted(receiver.texts) == sorted(set(receiver.texts)), "a message twice"
        assert set(receiver.texts) == set(acked)
    print(
        f"\nWS ACKS: {ACK_MESSAGES} messages, sender's worker SIGKILLed after 30 acks; "
        f"{state['connections']} sender connections, {state['duplicates']} resends acknowledged "
        f"as duplicates, {state['errors']} error frames; {len(receivers)} receivers, each offset once, no gap"
    )


def test_a_publish_that_fails_is_an_error_frame_naming_its_id(tmp_path: Path) -> None:
    """Redis killed after the join: the message with an id gets an error frame that names it
    (the sender resends it later), and the connection lives on."""
    with own_mariadb(tmp_path) as mariadb, own_redis(tmp_path) as redis:
        env = deployment_env(mariadb, redis)
        prepare(tmp_path, env, mariadb)
        with run_server(tmp_path, env, workers=1, ready_path="/healthz") as server:
            url = server.base_url.replace("http://", "ws://") + "/ws/chat"

            async def run() -> tuple[dict, dict]:
                async with connect(url, open_timeout=30) as ws:
                    await ws.send(json.dumps({"event": "join", "room": "r", "nickname": "ann"}))
                    while json.loads(await asyncio.wait_for(ws.recv(), 10))["event"] != "history":
                        pass
                    await asyncio.to_thread(redis.kill)
                    message = {"event": "message", "room": "r", "text": "x", "id": "lost-1"}
                    await ws.send(json.dumps(message))
                    error = json.loads(await asyncio.wait_for(ws.recv(), 10))
                    await ws.send(json.dumps({"event": "ping"}))
                    return error, json.loads(await asyncio.wait_for(ws.recv(), 10))

            error, pong = asyncio.run(run())
    assert error["event"] == "error" and error["id"] == "lost-1", error
    assert error["code"] == "unavailable" and error["ref"] == "message", error
    assert pong == {"event": "pong"}
