"""Safe retries against a production-mode service (2 Hypercorn workers) on a MariaDB of its own:
a client that resends a `POST` with its `Idempotency-Key` after every 503, 409, timeout or lost
connection ends with exactly one row per key, and every answer it gets is the stored one,
across a MariaDB SIGKILL and restart (issue 33: 8 blogs were stored twice without the key).
"""

from __future__ import annotations

import asyncio
import json
import re
import time
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from websockets.asyncio.client import connect

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
