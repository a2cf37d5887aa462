"""The third attack run's findings (issue 32) as found, against running services: bad Redis
settings stop `serve` in one line, a Redis that is down at start or dies later is served
around and reported by `/readyz` on every worker, recovery positions carrying a NUL are
refused, and names that impersonate are refused."""

from __future__ import annotations

import asyncio
import json
import os
import resource
import subprocess
import sys
import time
from urllib.parse import quote

import httpx
import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from tests.conftest import REDIS_URL
from tests.e2e.dependencies import own_redis
from tests.e2e.server import free_port, prepare_deployment, run_server
from tests.waiting import poll, poll_for

pytestmark = pytest.mark.e2e

ADMIN = ("root", "misconfiguration-admin-pw")


def serve_exits(
    env: dict[str, str], tmp_path, command: tuple[str, ...] = ("serve",)
) -> tuple[int, list[str], float]:
    """Run `python -m app serve`; its exit code, its output lines and the CPU seconds it and
    its children used (what a crash loop burns; wall time on a loaded CI machine measures the
    machine, not the service)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    finished = subprocess.run(
        [sys.executable, "-m", "app", *command],
        env={**os.environ, **env, "BIND": f"127.0.0.1:{free_port()}", "WEB_CONCURRENCY": "2"},
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,  # a hang, not a slow machine (its CPU time is what is bounded)
    )
    lines = [line for line in (finished.stdout + finished.stderr).splitlines() if line.strip()]
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return finished.returncode, lines, cpu


@pytest.fixture(scope="module")
def base_env(tmp_path_factory) -> dict[str, str]:
    folder = tmp_path_factory.mktemp("misconfiguration")
    return prepare_deployment(folder, "misconfiguration", ADMIN, REDIS_URL=REDIS_URL)


@pytest.mark.parametrize(
    ("settings", "named"),
    [
        ({"REDIS_URL": "redis://:::/x"}, "REDIS_URL"),
        ({"REDIS_URL": "", "REDIS_CLUSTER_NODES": "127.0.0.1:6379"}, "REDIS_CLUSTER_NODES"),
    ],
    ids=["unparsable-url", "cluster-nodes-at-a-plain-redis"],
)
def test_a_bad_redis_setting_stops_serve_in_one_line(base_env, tmp_path, settings, named) -> None:
    """`redis://:::/x` crash-looped the workers (23 restarts, 75 tracebacks in 25 s); cluster
    nodes that are a plain Redis started a service whose every join closed with 1011."""
    code, lines, cpu_seconds = serve_exits({**base_env, **settings}, tmp_path)
    assert code == 2, lines
    assert len(lines) == 1 and named in lines[0], lines
    assert "Traceback" not in "\n".join(lines)
    # The settings check runs before any worker starts: 0.65 s of CPU on an idle machine, about
    # what `python -m app --help` takes (0.46 s); a crash loop of two workers burns a second or
    # more per restart (the original's 23 restarts: tens of seconds). Against `--help` measured
    # now, as a loaded machine makes every process's CPU time longer (1.8-2.1 s for the same
    # exit with three suites at once on 2 cores). The cluster case also imports the server and
    # asks Redis for its topology, which `--help` does not: CI measured 0.86 s against 0.26 s,
    # hence the second's allowance on top of the ratio.
    _, _, help_cpu_seconds = serve_exits(base_env, tmp_path, ("--help",))
    assert cpu_seconds < 3 * help_cpu_seconds + 1.0, (cpu_seconds, help_cpu_seconds)


def test_readyz_is_503_on_every_worker_within_2_s_of_redis_dying(base_env, tmp_path) -> None:
    """`/readyz` read one worker's circuit breaker: `up` while Redis was unreachable."""
    with own_redis(tmp_path) as redis:
        env = {**base_env, "REDIS_URL": f"redis://127.0.0.1:{redis.port}/0"}
        with run_server(tmp_path, env, workers=2) as server:
            ready = f"{server.base_url}/readyz"

            def every_worker_says_503() -> bool:
                # New connections: the kernel spreads them over both workers' sockets.
                statuses = [
                    httpx.get(ready, headers={"Connection": "close"}, timeout=5).status_code
                    for _ in range(8)
                ]
                return statuses == [503] * 8

            poll(lambda: httpx.get(ready, timeout=5).status_code == 200, 10)
            round_started = time.monotonic()
            assert not every_worker_says_503()  # one round of probes while Redis is up
            probe_round = time.monotonic() - round_started
            redis.kill()
            died = time.monotonic()
            poll(every_worker_says_503, 10)
            took = time.monotonic() - died
            body = httpx.get(ready, timeout=5).json()
            redis.start()
            poll(lambda: httpx.get(ready, timeout=5).status_code == 200, 15)
    # 2 s, and the last round of probes (up to two rounds: one may begin just before); a
    # round takes 0.05 s on an idle machine, more on a loaded one.
    assert took < 2 + max(1.0, 2 * probe_round), (took, probe_round)
    assert "redis" in json.dumps(body), body


def test_the_scheduler_starts_while_redis_is_down_and_recovers(base_env, tmp_path) -> None:
    """With `SCHEDULER_ENABLED=true`, a start during a Redis outage crash-looped the workers
    (`LifespanFailureError: ... Connection refused`); now it serves and recovers."""
    with own_redis(tmp_path) as redis:
        env = {
            **base_env,
            "REDIS_URL": f"redis://127.0.0.1:{redis.port}/0",
            "SCHEDULER_ENABLED": "true",
        }
        redis.kill()
        with run_server(tmp_path, env, workers=2, ready_path="/healthz") as server:
            api = server.base_url
            assert httpx.get(f"{api}/api/v1/tag", timeout=10).status_code == 200
            assert httpx.get(f"{api}/readyz", timeout=10).status_code == 503
            redis.start()
            poll(lambda: httpx.get(f"{api}/readyz", timeout=5).status_code == 200, 20)
            # Each worker finds Redis back at its own next probe (REDIS_PROBE_SECONDS): /readyz
            # may have been answered by the other one.
            poll_for(
                lambda: httpx.get(f"{api}/scheduler", auth=ADMIN, timeout=10).status_code,
                lambda status: status == 200,
                timeout=20,
            )
            log = server.log()
        assert "exited with" not in log and "LifespanFailureError" not in log, log[-3000:]


def test_a_cluster_that_is_unreachable_at_start_gives_error_frames_not_1011(
    base_env, tmp_path
) -> None:
    """`REDIS_CLUSTER_NODES` at a dead port: every `/ws/chat` join closed with 1011 and a
    traceback (cluster errors were not RedisErrors)."""
    env = {**base_env, "REDIS_URL": "", "REDIS_CLUSTER_NODES": f"127.0.0.1:{free_port()}"}
    with run_server(tmp_path, env, workers=1, ready_path="/healthz") as server:
        url = server.base_url.replace("http://", "ws://") + "/ws/chat"

        async def scenario() -> tuple[list[dict], int | None]:
            frames: list[dict] = []
            async with connect(url) as ws:
                try:
                    await ws.send(json.dumps({"event": "join", "room": "r", "nickname": "n"}))
                    while True:
                        frames.append(json.loads(await asyncio.wait_for(ws.recv(), 10)))
                        if frames[-1].get("event") == "error":
                            return frames, None
                except ConnectionClosed as closed:
                    return frames, closed.rcvd.code if closed.rcvd else None

        frames, code = asyncio.run(scenario())
        log = server.log()
    assert code != 1011, (frames, code)
    assert code in (None, 1013), (frames, code)
    assert "Traceback" not in log, log[-3000:]


@pytest.fixture(scope="module")
def server(base_env, tmp_path_factory):
    with run_server(tmp_path_factory.mktemp("misconfiguration-a"), base_env, workers=1) as running:
        yield running


def ws_url(server, path: str) -> str:
    return server.base_url.replace("http://", "ws://") + path


@pytest.mark.parametrize("suffix", ["\x000", "\x00x"], ids=["nul-offset", "nul-garbage"])
def test_a_recovery_epoch_carrying_a_nul_is_refused(server, suffix) -> None:
    """`E + "\\x000"` read as the room's epoch at offset 0 (`recovered: true`, the whole
    history); `E + "\\x00x"` failed the Lua script and the client was told the store was
    down. Now the position is refused, naming the field."""

    async def scenario() -> dict:
        async with connect(ws_url(server, "/ws/chat")) as ws:
            await ws.send(json.dumps({"event": "join", "room": "nul", "nickname": "writer"}))
            while json.loads(await asyncio.wait_for(ws.recv(), 10))["event"] != "history":
                pass
            await ws.send(json.dumps({"event": "message", "room": "nul", "text": "hello"}))
            while (message := json.loads(await asyncio.wait_for(ws.recv(), 10)))[
                "event"
            ] != "message":
                pass
        async with connect(ws_url(server, "/ws/chat")) as ws:
            since = {"epoch": message["epoch"] + suffix, "offset": message["offset"]}
            await ws.send(
                json.dumps({"event": "join", "room": "nul", "nickname": "back", "since": since})
            )
            return json.loads(await asyncio.wait_for(ws.recv(), 10))

    answer = asyncio.run(scenario())
    assert answer["event"] == "error" and "epoch" in answer["msg"], answer
    assert "unavailable" not in json.dumps(answer)


@pytest.mark.parametrize(
    "nickname",
    ["\u202etoor", "\u3164\u3164", "\u115f\u1160", "\u2800\u2800", "\u0280\u1d0f\u1d0f\u1d1b"],
    ids=[
        "bidi-override",
        "hangul-fillers",
        "hangul-choseong-fillers",
        "braille-blank",
        "small-caps-root",
    ],
)
def test_a_chat_nickname_that_impersonates_or_shows_nothing_is_refused(server, nickname) -> None:
    async def scenario() -> dict:
        async with connect(ws_url(server, "/ws/chat")) as ws:
            await ws.send(json.dumps({"event": "join", "room": "names", "nickname": nickname}))
            return json.loads(await asyncio.wait_for(ws.recv(), 10))

    answer = asyncio.run(scenario())
    assert answer["event"] == "error" and "nickname" in answer["msg"], answer


@pytest.mark.parametrize(
    ("name", "status"),
    [("\u0280\u1d0f\u1d0f\u1d1b", 409), ("\u3164\u3164", 400), ("\u2800x", 400), ("a\u202eb", 400)],
    ids=["small-caps-root", "hangul-fillers", "braille-blank", "bidi-override"],
)
def test_an_account_name_that_impersonates_or_shows_nothing_is_refused(
    server, name, status
) -> None:
    created = httpx.post(
        f"{server.base_url}/api/v1/user",
        json={"name": name, "password": "a-good-password-1", "role": 0},
        auth=ADMIN,
        timeout=10,
    )
    assert created.status_code == status, created.text
    assert created.json()["status"] == "failed" and "name" in created.json()["msg"], created.text


@pytest.mark.parametrize("nickname", ["root", "\u0280\u1d0f\u1d0f\u1d1b", "ro\u200bot"])
def test_a_seed_nickname_may_not_be_an_account_name_or_its_look_alike(server, nickname) -> None:
    """`/websocket/<nickname>` keeps "nicknames may repeat", but not an account's name, its
    look-alike, or invisible characters: the handshake is refused with 400."""

    async def scenario() -> None:
        async with connect(ws_url(server, "/websocket/" + quote(nickname))):
            pass

    with pytest.raises(InvalidStatus) as refused:
        asyncio.run(scenario())
    assert refused.value.response.status_code == 400
