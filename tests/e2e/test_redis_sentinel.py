"""Redis Sentinel: 2 workers on a master, a replica and 3 sentinels of the test's own (free ports,
never 6379), under load from 10 clients and a chat between workers; then the master is
SIGKILLed and the sentinels promote the replica."""

from __future__ import annotations

import asyncio
import json
import secrets
import threading
import time
from collections import Counter
from datetime import datetime

import httpx
import pytest
from websockets.asyncio.client import connect

from tests.e2e.dependencies import own_sentinel_group, redis_cli
from tests.e2e.server import (
    add_tick_job,
    assert_presence_and_credential_limit,
    prepare_deployment,
    run_server,
)
from tests.e2e.test_websockets import join, opened_by_worker, recv_json, ws_url
from tests.waiting import poll, poll_for

ADMIN = ("root", "sentinel-admin-password")
DOWN_AFTER_MS = 1000
RECOVERY_TARGET = DOWN_AFTER_MS / 1000 + 3  # issue 20: down-after-milliseconds + 3 s


class Load:
    """10 clients (4 readers, 3 writers, 3 logins) until stopped; every answer kept."""

    def __init__(self, base_url: str, token: str) -> None:
        self.base_url = base_url
        self.token = token
        self.statuses: Counter[int] = Counter()
        self.written: list[tuple[str, str]] = []  # (tag id, name) of every answered write
        self.write_ok_at: list[float] = []
        self.stop = threading.Event()
        self.errors: list[str] = []

    def run(self) -> list[threading.Thread]:
        threads = [threading.Thread(target=self._reader) for _ in range(4)]
        threads += [threading.Thread(target=self._writer) for _ in range(3)]
        threads += [threading.Thread(target=self._login) for _ in range(3)]
        for thread in threads:
            thread.start()
        return threads

    def _client(self) -> httpx.Client:
        return httpx.Client(
            base_url=self.base_url, headers={"Authorization": f"Bearer {self.token}"}, timeout=10
        )

    def _count(self, response: httpx.Response) -> None:
        self.statuses[response.status_code] += 1
        if response.status_code >= 500 and response.status_code != 503:
            self.errors.append(f"{response.status_code} {response.request.url}: {response.text}")

    def _reader(self) -> None:
        with self._client() as client:
            while not self.stop.is_set():
                self._count(client.get("/api/v1/tag"))

    def _writer(self) -> None:
        with self._client() as client:
            while not self.stop.is_set():
                name = f"t-{secrets.token_hex(6)}"
                response = client.post("/api/v1/tag", json={"name": name})
                self._count(response)
                if response.status_code == 200:
                    self.written.append((response.json()["data"]["id"], name))
                    self.write_ok_at.append(time.monotonic())

    def _login(self) -> None:
        with httpx.Client(base_url=self.base_url, timeout=10) as client:
            while not self.stop.is_set():
                response = client.post("/login", json={"name": ADMIN[0], "password": ADMIN[1]})
                self._count(response)


@pytest.fixture
def group(tmp_path):
    with own_sentinel_group(tmp_path, down_after_ms=DOWN_AFTER_MS) as running:
        yield running


@pytest.mark.long(20)
def test_a_sentinel_failover_under_load(group, tmp_path) -> None:
    (tmp_path / "setup").mkdir()
    env = prepare_deployment(
        tmp_path / "setup",
        "sentinel",
        ADMIN,
        REDIS_SENTINELS=group.sentinel_addresses,
        REDIS_SENTINEL_MASTER=group.master_name,
        SCHEDULER_ENABLED="true",
        SCHEDULER_LEASE_SECONDS="3",
        AUTH_RATE_LIMIT="5/minute",
        AUTH_ADDRESS_RATE_LIMIT="1000/minute",
    )
    (tmp_path / "server").mkdir()
    with run_server(tmp_path / "server", env, workers=2) as server:
        auth = ADMIN
        token = httpx.post(server.base_url + "/api/v1/tokens", auth=auth).json()["data"]["token"]
        add_tick_job(server.base_url, auth)
        load = Load(server.base_url, token)
        threads = load.run()
        old_master = group.master()
        promoted_at: list[float] = []

        def watch_promotion() -> None:
            poll(lambda: group.master_port() != old_master.port, 30, interval=0.05)
            promoted_at.append(time.monotonic())

        watcher = threading.Thread(target=watch_promotion)
        watcher.start()
        try:
            outcome = asyncio.run(_chat_across_the_failover(server, group, old_master.kill))
        finally:
            load.stop.set()
            for thread in threads:
                thread.join(30)
            watcher.join(30)
        killed_at, chat_back_at = outcome

        # No 500 under the failover; every answered write is stored.
        assert not load.errors, load.errors[:5]
        assert load.statuses[200] > 100, load.statuses
        for tag_id, name in load.written:
            stored = httpx.get(f"{server.base_url}/api/v1/tag/{tag_id}", auth=auth)
            assert stored.status_code == 200 and stored.json()["data"]["name"] == name
        writes_back_at = min(at for at in load.write_ok_at if at > killed_at)
        assert group.master_port() != old_master.port

        # Presence and the credential limit keep counting on the new master.
        assert_presence_and_credential_limit(server.base_url, auth)

        # The tick runs on across the failover, never twice for one scheduled time.
        def ticks() -> list[datetime]:
            response = httpx.get(f"{server.base_url}/scheduler/jobs/tick/runs", auth=auth)
            return [
                datetime.fromisoformat(run["scheduled_time"])
                for run in response.json()
                if run["outcome"] == "success"
            ]

        def resumed(times: list[datetime]) -> bool:
            return sum(t.timestamp() > time.time() - 3 for t in times) >= 2

        after = poll_for(ticks, resumed, timeout=30)
        assert max(Counter(after).values()) == 1, "a tick ran twice"
        claims = _claims(env["DATABASE_URL"])
        assert len(claims) == len(set(claims))

        print(
            f"\nsentinel failover: master killed; the sentinels named the new master after "
            f"{promoted_at[0] - killed_at:.2f} s; writes answered again after "
            f"{max(0.0, writes_back_at - killed_at):.2f} s, chat after "
            f"{chat_back_at - killed_at:.2f} s (target {RECOVERY_TARGET:.0f} s); "
            f"{sum(load.statuses.values())} answers: {dict(load.statuses)}"
        )
        # Issue 20's 3 s count from when a client could know: the sentinels' down-after, or
        # their promotion where they took longer (their own speed on a loaded CI machine).
        knowable_at = max(killed_at + DOWN_AFTER_MS / 1000, promoted_at[0])
        assert chat_back_at - knowable_at <= RECOVERY_TARGET - DOWN_AFTER_MS / 1000


def _claims(database_url: str) -> list[tuple[str, str]]:
    from sqlalchemy import create_engine, text

    engine = create_engine(database_url.replace("+aiomysql", "+pymysql"))
    with engine.connect() as connection:
        rows = connection.execute(text("SELECT job_id, run_time FROM scheduler_runs")).all()
    engine.dispose()
    return [(job_id, str(run_time)) for job_id, run_time in rows]


async def _chat_across_the_failover(server, group, kill) -> tuple[float, float]:
    """Two clients on different workers in one room; kill the master; send until a message
    reaches both. Returns (killed at, both got a message sent after the kill at)."""
    marker = f"sentinel-{time.monotonic_ns()}"
    async with httpx.AsyncClient() as client:
        await client.get(f"{server.base_url}/api/v1/tag", headers={"X-Request-ID": marker})
    clients = []
    try:
        while len(opened_by_worker(server.log(), marker)) < 2:
            assert len(clients) < 100, "every connection landed on one worker"
            clients.append(await connect(ws_url(server, "/ws/chat")))
        for i, ws in enumerate(clients):
            await join(ws, "failover", f"s{i}")
        first_pid = opened_by_worker(server.log(), marker)
        assert len(first_pid) == 2
        killed_at = time.monotonic()
        kill()
        attempt = 0
        while True:
            attempt += 1
            assert time.monotonic() - killed_at < 30, "chat did not come back"
            text = f"after-{attempt}"
            await clients[0].send(
                json.dumps({"event": "message", "room": "failover", "text": text})
            )
            if await _everyone_got(clients, text):
                return killed_at, time.monotonic()
    finally:
        for ws in clients:
            await ws.close()


async def _everyone_got(clients, text: str, timeout: float = 0.5) -> bool:
    """Whether every client receives the message `text` within `timeout` s (the sender gets
    an error frame instead while the store is down)."""
    for ws in clients:
        deadline = time.monotonic() + timeout
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return False
            try:
                frame = await recv_json(ws, remaining)
            except TimeoutError:
                return False
            if frame.get("event") == "message" and frame.get("text") == text:
                break
    return True


def test_the_sentinel_group_fails_over_on_its_own(group) -> None:
    """The test's own servers behave as a deployment's would: a killed master is replaced by
    the replica within a few seconds, and every sentinel names the new one."""
    old = group.master()
    old.kill()
    poll(lambda: group.master_port() != old.port, 20)
    new = group.master_port()
    assert "role:master" in redis_cli(new, "info", "replication")
