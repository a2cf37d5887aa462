"""What every server option of `serve` must hold (README "Servers"), on Hypercorn (the default)
and on Uvicorn (`SERVER=uvicorn`, app/uvicorn_server.py), each test run on both: header and
body timeouts, the head's size bound, ambiguous framing, the websocket close codes, the drain
with 1001 on SIGTERM, and a fan-out across workers without losses.

The rest of the e2e suite runs on Hypercorn; these are the properties that live in the server
layer, or where it and the app meet.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import signal
import socket
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from pathlib import Path

import httpx
import psutil
import pytest
import sqlalchemy
from websockets.asyncio.client import connect

from tests.conftest import REDIS_URL
from tests.e2e.server import (
    RunningServer,
    assert_stopped_without_waiting_out_the_graceful_timeout,
    prepare_deployment,
    run_server,
    workers_of,
)
from tests.e2e.slow_client import StalledClient
from tests.e2e.test_concurrency import STATUS, SlowSocket, address, upload_head
from tests.e2e.test_hardening_http import SMUGGLED_GET
from tests.e2e.test_websockets import (
    assert_invalid_utf8_gets_1007,
    close_code,
    firehose_cuts_off_a_stalled_client,
    ws_url,
)
from tests.resources import mysql_database_url
from tests.waiting import poll

ADMIN = ("options-admin", "options-admin-password")
SERVERS = ["hypercorn", "uvicorn"]
pytestmark = pytest.mark.e2e
Serve = Callable[..., AbstractContextManager[RunningServer]]


@pytest.fixture(scope="module")
def deployment(tmp_path_factory) -> tuple[Path, dict[str, str]]:
    folder = tmp_path_factory.mktemp("server-options")
    env = prepare_deployment(
        folder, "server_options", ADMIN, REDIS_URL=REDIS_URL, WS_RATE_LIMIT="2000/second"
    )
    return folder, env


# The settings of the tests that share one single-worker server per server kind (`server`):
# each test exercises one of them, and none changes what the others see.
SHARED_SETTINGS = {
    "HTTP_HEADER_TIMEOUT": "1",
    "HTTP_BODY_TIMEOUT": "1",
    "WS_RATE_LIMIT": "20/second",
    "WS_FLOOD_STRIKES": "3",
    "WS_IDLE_TIMEOUT": "2",
}


@pytest.fixture(scope="module", params=SERVERS)
def server(request, deployment) -> Iterator[RunningServer]:
    """One server per server kind, with `SHARED_SETTINGS`, for the tests that only talk to it (a
    start of each per test cost 2 s of CPU)."""
    folder, env = deployment
    with run_server(
        folder, {**env, "SERVER": request.param, **SHARED_SETTINGS}, workers=1,
        ready_path="/healthz",
    ) as running:  # fmt: skip
        yield running


@pytest.fixture(params=SERVERS)
def serve(request, deployment) -> Serve:
    """Start the service on the parametrized server with extra settings."""
    folder, env = deployment

    def start(workers: int = 1, **settings: str) -> AbstractContextManager[RunningServer]:
        return run_server(
            folder, {**env, "SERVER": request.param, **settings}, workers=workers,
            ready_path="/healthz",
        )  # fmt: skip

    start.server_name = request.param  # type: ignore[attr-defined]
    return start


@pytest.fixture
def raw(request) -> Iterator[Callable[[RunningServer], socket.socket]]:
    opened: list[socket.socket] = []

    def open_socket(server: RunningServer) -> socket.socket:
        sock = socket.create_connection(address(server), timeout=10)
        opened.append(sock)
        return sock

    yield open_socket
    for sock in opened:
        sock.close()


def read_response(sock: socket.socket) -> bytes:
    """One whole response with a Content-Length (its head and body may come in two writes)."""
    received = b""
    while b"\r\n\r\n" not in received:
        received += sock.recv(65536)
    head, _, body = received.partition(b"\r\n\r\n")
    length = int(re.search(rb"(?im)^content-length: *(\d+)", head)[1])
    while len(body) < length:
        body += sock.recv(65536)
    return head + b"\r\n\r\n" + body


def closed_within(sock: socket.socket, seconds: float) -> float | None:
    """Seconds until the server closed `sock` (reads reach EOF), or None if it did not within
    `seconds`; whatever the server sent first is read and dropped."""
    started = time.monotonic()
    sock.settimeout(0.2)
    while time.monotonic() - started < seconds:
        try:
            if sock.recv(65536) == b"":
                return time.monotonic() - started
        except TimeoutError:
            continue
        except OSError:
            return time.monotonic() - started
    return None


def test_the_server_named_is_the_one_serving(server, request) -> None:
    answered = httpx.get(f"{server.base_url}/healthz", timeout=10)
    assert answered.status_code == 200
    assert "server" not in answered.headers  # neither says what software answers
    assert "date" in answered.headers
    started = [line for line in server.log().splitlines() if "Running on" in line]
    on_uvicorn = ["with Uvicorn" in line for line in started]
    named = request.node.callspec.params["server"]
    assert on_uvicorn == [named == "uvicorn"] * len(started) and started


GAUGE = re.compile(r"^(db_pool_connections_in_use|http_requests_waiting) ([\d.]+)$", re.M)


def gauges(server: RunningServer) -> dict[str, float]:
    """The pool's connections in use and the requests waiting for a slot, from /metrics."""
    text = httpx.get(f"{server.base_url}/metrics", timeout=5).text
    return {name: float(value) for name, value in GAUGE.findall(text)}


@contextlib.contextmanager
def tags_locked() -> Iterator[None]:
    """The `tags` table write-locked by a session of the test's own: a read of it waits."""
    engine = sqlalchemy.create_engine(
        mysql_database_url("server_options").replace("+aiomysql", "+pymysql")
    )
    try:
        with engine.connect() as lock:
            lock.execute(sqlalchemy.text("LOCK TABLES tags WRITE"))
            try:
                yield
            finally:
                lock.execute(sqlalchemy.text("UNLOCK TABLES"))
    finally:
        engine.dispose()


def test_a_client_that_leaves_mid_request_has_its_work_stopped(server) -> None:
    """A request waiting on the database (a locked table) whose client closes its connection is
    cancelled and gives its pooled connection up at once, not when the database answers: the
    server tells the app (app.client_gone on both servers' HTTP/1 protocols)."""
    with tags_locked():
        with socket.create_connection(address(server), timeout=10) as leaving:
            leaving.sendall(b"GET /api/v1/tag HTTP/1.1\r\nHost: x\r\n\r\n")
            poll(lambda: gauges(server)["db_pool_connections_in_use"] == 1, 10, interval=0.05)
        # Well before DB_TIMEOUT (5 s), which would end the wait without the client gone being
        # told; the table is still locked.
        poll(lambda: gauges(server)["db_pool_connections_in_use"] == 0, 2.5, interval=0.05)
    assert httpx.get(f"{server.base_url}/api/v1/tag", timeout=10).status_code == 200


def test_a_request_whose_client_left_while_it_waited_for_a_slot_is_not_served(
    serve, deployment
) -> None:
    """The one slot held by a read on a locked table; a second request waits for it, and its
    client leaves. Once the slot is free that request is dropped, not served to nobody (no
    access-log line, no 200): its server told the app it was gone before the app registered
    (app.client_gone), as Quart's watcher found `http.disconnect` waiting."""
    request = b"GET %b HTTP/1.1\r\nHost: x\r\n\r\n"
    # The queue's time bound well past the steps below: the leaver's request is admitted, not
    # shed, however slow the machine.
    with serve(HTTP_CONCURRENCY="1", HTTP_QUEUE_TIMEOUT="20", DB_TIMEOUT="8") as server:
        (worker,) = workers_of(server.process.pid)
        with tags_locked():
            holder = socket.create_connection(address(server), timeout=10)
            holder.sendall(request % b"/api/v1/tag")
            poll(lambda: gauges(server)["db_pool_connections_in_use"] == 1, 10, interval=0.05)
            leaver = socket.create_connection(address(server), timeout=10)
            leaver.sendall(request % b"/api/v1/user")
            poll(lambda: gauges(server)["http_requests_waiting"] == 1, 10, interval=0.05)
            port = leaver.getsockname()[1]
            leaver.close()

            def leaver_seen_closing() -> bool:
                # Closed by the server (Uvicorn), or its end received (Hypercorn keeps the
                # socket while the request's task runs).
                return all(
                    c.raddr[1:] != (port,) or c.status == psutil.CONN_CLOSE_WAIT
                    for c in worker.net_connections()
                )

            poll(leaver_seen_closing, 10, interval=0.05)
            holder.close()  # its read is cancelled, and the slot goes to the leaver's
            poll(lambda: gauges(server)["http_requests_waiting"] == 0, 10, interval=0.05)
        # With one slot, this request is admitted only once the leaver's has given it back:
        # a line of the leaver's request would be written before this one's.
        assert httpx.get(f"{server.base_url}/api/v1/tag", timeout=10).status_code == 200
        poll(lambda: "GET /api/v1/tag 200" in server.log(), 10, interval=0.05)
        assert "GET /api/v1/user " not in server.log(), server.log()


def test_a_request_head_must_arrive_within_the_header_timeout(server, raw) -> None:
    """HTTP_HEADER_TIMEOUT=1: a silent new connection and a head trickled a byte at a time are
    closed after about 1 s; an idle keep-alive connection is kept past it and serves again."""
    silent = raw(server)
    trickled = raw(server)
    trickled.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
    kept = raw(server)
    kept.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
    kept.settimeout(10)
    assert STATUS.match(read_response(kept)), "the first request is answered"
    started = time.monotonic()
    for byte in b"X-Pad: yyyyyyyyyy":
        try:
            trickled.sendall(bytes([byte]))
        except OSError:
            break
        if closed_within(trickled, 0.3) is not None:
            break
    trickled_held = time.monotonic() - started
    silent_closed = closed_within(silent, 5)
    assert silent_closed is not None and silent_closed < 3, silent_closed
    assert trickled_held < 3, trickled_held
    time.sleep(1.5)  # idle past HTTP_HEADER_TIMEOUT (1 s): the behaviour under test
    kept.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
    assert STATUS.match(read_response(kept)), "an idle keep-alive connection is kept"


def test_a_head_over_16_kib_is_431(server, raw) -> None:
    """hypercorn.toml's `h11_max_incomplete_size`: a head still incomplete past 16 KiB. (h11
    applies it to what is buffered while the head is incomplete: one that arrives whole in a
    single read of up to 64 KiB passes on Hypercorn; Uvicorn counts every head.)"""
    sock = raw(server)
    sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: " + b"y" * 20_000)
    time.sleep(0.2)  # the rest in a later read: a head still incomplete past 16 KiB
    with contextlib.suppress(OSError):  # already answered and closed
        sock.sendall(b"y" * 20_000 + b"\r\n\r\n")
    sock.settimeout(10)
    received = sock.recv(65536)
    assert STATUS.match(received)[1] == b"431", received[:200]
    assert closed_within(sock, 5) is not None


@pytest.mark.parametrize(
    "framing",
    [
        b"Content-Length: 4\r\nTransfer-Encoding: chunked\r\n",
        b"Transfer-Encoding: chunked\r\nContent-Length: 4\r\n",
        b"Transfer-Encoding: gzip\r\n",
    ],
)
def test_ambiguous_framing_is_400_and_the_connection_closes(server, raw, framing) -> None:
    sock = raw(server)
    sock.sendall(
        b"POST /api/v1/tag HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        + framing
        + b"\r\n0\r\n\r\n"
        + SMUGGLED_GET
    )
    sock.settimeout(5)
    received = b""
    try:
        while chunk := sock.recv(65536):
            received += chunk
    except TimeoutError:
        pytest.fail(f"the connection was kept open: {received[:300]!r}")
    statuses = re.findall(rb"^HTTP/1\.1 (\d{3})", received, re.M)
    assert statuses == [b"400"], received[:500]  # the smuggled GET is never answered


def test_a_body_must_arrive_within_the_body_timeout(server) -> None:
    upload = SlowSocket(server, upload_head(server))
    try:
        upload.sock.settimeout(5)
        received = upload.sock.recv(65536)
        held = time.monotonic() - upload.started
        assert STATUS.match(received)[1] == b"408", received[:200]
        assert held < 2.5, held
        assert upload.closed_by_server()
    finally:
        upload.close()


def test_websocket_close_codes(server) -> None:
    """1007 for a text frame that is not UTF-8, 1009 for a frame over WS_MAX_MESSAGE_BYTES,
    1008 for a flood and for an idle client; a polite client on the same worker is
    unaffected."""
    ping = json.dumps({"event": "ping"})
    url = ws_url(server, "/ws/chat")
    assert_invalid_utf8_gets_1007(url)
    flooder = StalledClient(url, receive_buffer=1 << 20)
    flooder.send_burst([ping] * 200)
    assert flooder.read_until_closed(timeout=5) == 1008
    flooder.close()

    async def scenario() -> tuple[int, int, str]:
        async with connect(url, max_size=None) as oversized, connect(url) as polite:
            await oversized.send(json.dumps({"msg": "x" * 70_000}))
            too_big = await close_code(oversized)
            await polite.send(ping)
            answer = json.loads(await asyncio.wait_for(polite.recv(), 5))["event"]
        async with connect(url) as idle:
            idle_code = await close_code(idle, timeout=10)
        return too_big, idle_code, answer

    too_big, idle_code, answer = asyncio.run(scenario())
    assert (too_big, idle_code, answer) == (1009, 1008, "pong")


def test_a_client_that_stops_reading_gets_1013(serve) -> None:
    """A client that joins a room and reads nothing is closed with 1013 once its send queue
    (WS_SEND_QUEUE=64) overflows; a fast reader in the room gets all 3,000 messages
    (tests/e2e/test_websockets.py's firehose). The other clients offer permessage-deflate and
    get it (WS_COMPRESSION=true), so only the stalled one is sent 12 MB."""
    with serve(WS_SEND_QUEUE="64", WS_COMPRESSION="true") as server:
        assert "send queue full" in firehose_cuts_off_a_stalled_client(server)


def test_sigterm_closes_every_websocket_with_1001_and_exits_in_time(serve) -> None:
    connections = 200

    async def scenario(server: RunningServer) -> tuple[list[int], float]:
        clients = await asyncio.gather(
            *[
                connect(ws_url(server, "/ws/chat" if i % 2 else "/websocket"), open_timeout=30)
                for i in range(connections)
            ]
        )
        sigterm_at = time.monotonic()
        server.process.send_signal(signal.SIGTERM)
        codes = await asyncio.gather(*[close_code(ws, timeout=15) for ws in clients])
        return codes, sigterm_at

    with serve(workers=2) as server:
        codes, sigterm_at = asyncio.run(scenario(server))
        assert server.process.wait(15) == 0
        exited_within = time.monotonic() - sigterm_at
    assert codes.count(1001) == connections, {code: codes.count(code) for code in set(codes)}
    assert_stopped_without_waiting_out_the_graceful_timeout(server.log(), exited_within, 2)


def test_a_fan_out_across_workers_loses_nothing(serve) -> None:
    """60 receivers on 2 workers (the kernel spreads them) and one sender: 100 messages reach
    every receiver, each once and in order."""
    receivers, messages = 60, 100

    async def scenario(server: RunningServer) -> list[list[str]]:
        clients = [await connect(ws_url(server, "/websocket")) for _ in range(receivers + 1)]
        sender, listening = clients[0], clients[1:]
        try:

            async def read_all(client) -> list[str]:
                got: list[str] = []
                while len(got) < messages:
                    frame = str(await asyncio.wait_for(client.recv(), 20))
                    if frame.startswith("m"):
                        got.append(frame)
                return got

            readers = [asyncio.ensure_future(read_all(client)) for client in listening]
            for number in range(messages):
                await sender.send(f"m{number:03d}")
            return await asyncio.gather(*readers)
        finally:
            for client in clients:
                await client.close()

    with serve(workers=2) as server:

        def both_workers_serve() -> bool:
            return server.log().count("Running on") >= 2

        poll(both_workers_serve, 30)
        received = asyncio.run(scenario(server))
    expected = [f"m{number:03d}" for number in range(messages)]
    assert all(got == expected for got in received)
