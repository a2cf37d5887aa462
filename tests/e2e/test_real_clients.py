"""The websocket defects Autobahn|Testsuite and raw-socket probes found (issue 31), each as it
was found, against a running service on production settings (`WS_MAX_MESSAGE_BYTES` 64 KiB):
an empty binary frame, frames far over the limit, a close the client never answers, and a
flood whose close code must reach the client before any reset."""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import socket
import threading
import time

import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from tests.conftest import REDIS_URL
from tests.e2e.server import prepare_deployment, run_server
from tests.e2e.test_concurrency import address
from tests.waiting import poll

pytestmark = pytest.mark.e2e

HANDSHAKE = (
    "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
    "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
)
ENDPOINTS = ["/ws", "/websocket", "/websocket/alice", "/ws/chat"]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    folder = tmp_path_factory.mktemp("real-clients")
    env = prepare_deployment(
        folder, "real_clients", ("root", "real-clients-pw"), REDIS_URL=REDIS_URL
    )
    with run_server(folder, {**env, "MONITOR_INTERVAL": "0.5"}, workers=1) as running:
        yield running


def ws_url(server, path: str) -> str:
    return server.base_url.replace("http://", "ws://") + path


def client_frame(opcode: int, payload: bytes) -> bytes:
    """A client frame with a zero mask (valid, RFC 6455 §5.3, and no copy of a large payload)."""
    size = len(payload)
    if size < 126:
        length = bytes([0x80 | size])
    elif size < 1 << 16:
        length = bytes([0x80 | 126]) + size.to_bytes(2)
    else:
        length = bytes([0x80 | 127]) + size.to_bytes(8)
    return bytes([0x80 | opcode]) + length + b"\0\0\0\0" + payload


def open_websocket(server, path: str) -> socket.socket:
    """A raw socket past its handshake: the 101 read before any frame is sent (RFC 6455 §4.1;
    a frame sent with the handshake gets a 400)."""
    sock = socket.create_connection(address(server), timeout=10)
    sock.sendall(HANDSHAKE.format(path=path).encode())
    head = b""
    while b"\r\n\r\n" not in head:
        chunk = sock.recv(1)
        assert chunk, head
        head += chunk
    assert head.startswith(b"HTTP/1.1 101"), head
    return sock


def close_code(sock: socket.socket) -> int | None:
    """Read the server's (unmasked) frames until its close frame: its code, or None when the
    stream ended first."""
    frames = frames_until_close(sock)
    if not frames or frames[-1][0] != 0x8:
        return None
    payload = frames[-1][1]
    return int.from_bytes(payload[:2]) if len(payload) >= 2 else 1005


def ends_within(sock: socket.socket, seconds: float) -> float | None:
    """Seconds until the server ends the TCP stream (EOF or reset), or None past `seconds`."""
    started = time.monotonic()
    deadline = started + seconds
    try:
        while (left := deadline - time.monotonic()) > 0:
            sock.settimeout(left)
            if sock.recv(65536) == b"":
                return time.monotonic() - started
    except ConnectionResetError:
        return time.monotonic() - started
    except TimeoutError:
        pass
    return None


@pytest.mark.parametrize("path", ENDPOINTS)
def test_an_empty_binary_frame_gets_the_binary_error_frame_and_the_socket_lives(
    server, path
) -> None:
    """Autobahn 1.2.1 and 9.8.1: `b""` closed every endpoint with 1011 and logged a
    traceback."""

    async def scenario() -> None:
        async with connect(ws_url(server, path)) as ws:
            await ws.send(b"")
            deadline = time.monotonic() + 5
            while True:  # /ws sends its samples meanwhile; the error frame is among them
                message = json.loads(await asyncio.wait_for(ws.recv(), 5))
                if message.get("event") == "error":
                    break
                assert time.monotonic() < deadline, "no error frame"
            assert message["msg"] == "binary frames are not supported; send text"
            await asyncio.wait_for(await ws.ping(), 5)  # alive: the pong comes
            await ws.send(b"\x00\x01")  # a non-empty one is the same error
            while (message := json.loads(await asyncio.wait_for(ws.recv(), 5)))["event"] != "error":
                pass

    asyncio.run(scenario())
    assert "Traceback" not in server.log()
    assert not re.search(rf"websocket {re.escape(path)} closed 1011", server.log())


@pytest.mark.parametrize("size", [70_000, 2_000_000, 4_000_000, 17 * 1024 * 1024])
def test_a_frame_over_the_limit_gets_1009_within_a_second_whatever_its_size(server, size) -> None:
    """2 MB and more got no close at all (both ends ESTABLISHED until the idle timeout). The
    client writes its frame from a thread, as a client does that sends without reading."""
    with open_websocket(server, "/websocket/bigsender") as sock:
        started = time.monotonic()
        sender = threading.Thread(
            target=_send_ignoring_resets, args=(sock, client_frame(0x1, b"x" * size))
        )
        sender.start()
        code = close_code(sock)
        seconds = time.monotonic() - started
        sender.join(10)
    assert code == 1009 and seconds < 1, (code, seconds)
    poll(lambda: "websocket /websocket/bigsender closed 1009" in server.log(), 5)


def _send_ignoring_resets(sock: socket.socket, data: bytes) -> None:
    with contextlib.suppress(OSError):  # the server may close before the client is done
        sock.sendall(data)


def test_a_2_mb_message_from_a_websockets_client_gets_1009(server) -> None:
    """The reproduction as found: `websockets.connect(url, max_size=None)`, a 2 MB JSON
    message, `recv()` with a 12 s timeout."""

    async def scenario() -> int | None:
        async with connect(ws_url(server, "/websocket/bigsender"), max_size=None) as ws:
            await ws.send(json.dumps({"msg": "x" * 2_000_000}))
            try:
                await asyncio.wait_for(ws.recv(), 12)
            except ConnectionClosed as closed:
                return closed.rcvd.code if closed.rcvd else None
            return None

    assert asyncio.run(scenario()) == 1009


@pytest.mark.parametrize("size", [70_000, 2_000_000])
def test_a_close_the_client_never_answers_ends_the_connection_within_seconds(server, size) -> None:
    """After its 1009 the server held the connection until WS_IDLE_TIMEOUT (60 s) and logged
    1008; now the client has 2 s to answer, the input is drained for at most 2 s more, and
    the log names 1009."""
    before = server.log().count("websocket /ws/chat closed 1009")
    with open_websocket(server, "/ws/chat") as sock:
        sock.sendall(client_frame(0x1, b"x" * size))
        assert close_code(sock) == 1009
        seconds = ends_within(sock, 10)  # this client never answers the close
    assert seconds is not None and seconds < 5, seconds
    poll(lambda: server.log().count("websocket /ws/chat closed 1009") > before, 5)


def test_a_flood_reads_its_1008_every_time(server) -> None:
    """200 frames in one write after the handshake: the 1008 reached a raw-socket client only
    when no reset came first (lingering close); 50 tries, 50 close codes."""
    frames = client_frame(0x1, json.dumps({"event": "ping"}).encode()) * 200
    codes = []
    for _ in range(50):
        with open_websocket(server, "/ws/chat") as sock:
            sock.sendall(frames)
            codes.append(close_code(sock))
    assert codes == [1008] * 50, codes


def test_a_frame_sent_before_the_101_is_a_400_and_no_traceback(server) -> None:
    """A client that does not wait for the handshake's answer (RFC 6455 §4.1) gets Hypercorn's
    400; the app, which had accepted meanwhile, is told (1002) and no longer fails with an
    AttributeError."""
    with socket.create_connection(address(server), timeout=10) as sock:
        sock.sendall(HANDSHAKE.format(path="/ws/chat").encode() + client_frame(0x1, b"{}"))
        received = b""
        with contextlib.suppress(TimeoutError, ConnectionResetError):
            while chunk := sock.recv(65536):
                received += chunk
    assert received.startswith(b"HTTP/1.1 400"), received[:100]
    # The app learns at once (it kept the connection registered until its 60 s idle timeout).
    poll(lambda: "websocket /ws/chat closed 1002" in server.log(), 5)
    assert "AttributeError" not in server.log() and "Traceback" not in server.log()


def frames_until_close(sock: socket.socket) -> list[tuple[int, bytes]]:
    """The server's frames (opcode, payload) up to and including its close frame."""
    frames: list[tuple[int, bytes]] = []
    buffer = bytearray()

    def need(count: int) -> bool:
        while len(buffer) < count:
            chunk = sock.recv(65536)
            if not chunk:
                return False
            buffer.extend(chunk)
        return True

    while need(2):
        opcode, length = buffer[0] & 0x0F, buffer[1] & 0x7F
        extra = {126: 2, 127: 8}.get(length, 0)
        if not need(2 + extra):
            break
        if extra:
            length = int.from_bytes(buffer[2 : 2 + extra])
        if not need(2 + extra + length):
            break
        frames.append((opcode, bytes(buffer[2 + extra : 2 + extra + length])))
        del buffer[: 2 + extra + length]
        if opcode == 0x8:
            break
    return frames


@pytest.mark.parametrize(
    "refused_frame",
    [
        bytes([0x80 | 0x40 | 0x1, 0x80 | 5]) + b"\0\0\0\0" + b"hello",  # RSV1 unnegotiated
        client_frame(0x7, b"reserved"),  # a reserved non-control opcode
    ],
    ids=["3.4-reserved-bit", "4.1.5-reserved-opcode"],
)
def test_a_message_then_a_refused_frame_gets_its_echo_before_the_close(
    server, refused_frame
) -> None:
    """Autobahn|Testsuite 3.4 and 4.1.5, in one TCP write: the message's echo comes first,
    then the close (1002), every time (Hypercorn closed at once and the echo was lost)."""
    for attempt in range(10):
        sock = open_websocket(server, "/websocket")
        with contextlib.closing(sock):
            message = f"hello {attempt}".encode()
            sock.sendall(client_frame(0x1, message) + refused_frame + client_frame(0x9, b""))
            frames = frames_until_close(sock)
        # /websocket relays to every client: an earlier attempt's message may come too.
        assert (0x1, message) in frames[:-1], (attempt, frames)
        assert frames[-1][0] == 0x8 and int.from_bytes(frames[-1][1][:2]) == 1002, frames
