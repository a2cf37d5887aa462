"""Each change app/hypercorn_patches.py makes, shown on a real Hypercorn server through a raw
socket, with the patch and without it (tests/hypercorn_server.py serves a tiny app with only
the patches named). When an upgrade changes what a patch relies on, its "with" case fails;
when upstream fixes the problem, its "without" case fails, and the patch can go."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import pytest

from app.hypercorn_patches import UnsupportedServerVersion, check_versions
from tests.e2e.server import PROJECT_ROOT, free_port
from tests.waiting import poll

HANDSHAKE = (
    "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
    "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n{extra}\r\n"
)
BROWSER_OFFER = "Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n"


@dataclass
class BareServer:
    process: subprocess.Popen[str]
    port: int

    def connect(self, receive_buffer: int | None = None) -> socket.socket:
        client = socket.socket()
        if receive_buffer is not None:
            client.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, receive_buffer)
        client.settimeout(5)
        client.connect(("127.0.0.1", self.port))
        return client

    def stop(self) -> float:
        """SIGTERM; the seconds until the process exited."""
        started = time.monotonic()
        self.process.terminate()
        self.process.wait(30)
        return time.monotonic() - started


@contextmanager
def bare_server(
    patches: str, graceful_timeout: float = 5, keep_alive_timeout: float = 5
) -> Iterator[BareServer]:
    port = free_port()
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "tests.hypercorn_server",
            str(port),
            patches,
            str(graceful_timeout),
            str(keep_alive_timeout),
        ],
        cwd=PROJECT_ROOT,
        stdout=subprocess.PIPE,
        text=True,
    )
    server = BareServer(process, port)

    def listening() -> bool:
        try:
            server.connect().close()
            return True
        except OSError:
            assert process.poll() is None, "the bare server exited"
            return False

    try:
        poll(listening, 20)
        yield server
    finally:
        if process.poll() is None:
            process.kill()
        process.wait(10)


def websocket(
    server: BareServer, path: str = "/echo", extra: str = ""
) -> tuple[socket.socket, str]:
    """A connected websocket (raw socket) and the handshake's response head."""
    client = server.connect()
    client.sendall(HANDSHAKE.format(path=path, extra=extra).encode())
    head = b""
    while b"\r\n\r\n" not in head:
        chunk = client.recv(1)
        assert chunk, f"closed during the handshake: {head!r}"
        head += chunk
    assert head.startswith(b"HTTP/1.1 101"), head
    return client, head.decode()


def client_frame(opcode: int, payload: bytes) -> bytes:
    """A client's masked frame (payload under 126 bytes), built by hand so it may be invalid."""
    mask = b"\x01\x02\x03\x04"
    masked = bytes(byte ^ mask[i % 4] for i, byte in enumerate(payload))
    return bytes([0x80 | opcode, 0x80 | len(payload)]) + mask + masked


def server_frame(client: socket.socket) -> tuple[int, bytes] | None:
    """The server's next (unmasked, short) frame as (opcode, payload); None at end of stream."""
    head = client.recv(2)
    if len(head) < 2:
        return None
    length = head[1] & 0x7F
    payload = b""
    while len(payload) < length:
        payload += client.recv(length - len(payload))
    return head[0] & 0x0F, payload


def ends_within(client: socket.socket, seconds: float) -> bool:
    """Whether the server ends the TCP stream (EOF or reset) within `seconds`, reading and
    dropping whatever it still sends before that."""
    deadline = time.monotonic() + seconds
    try:
        while (left := deadline - time.monotonic()) > 0:
            client.settimeout(left)
            if client.recv(4096) == b"":
                return True
    except ConnectionResetError:
        return True
    except TimeoutError:
        pass
    return False


def test_the_installed_versions_are_the_supported_ones() -> None:
    check_versions()  # else `serve` refuses to start (tests/test_cli.py shows the line)
    assert issubclass(UnsupportedServerVersion, RuntimeError)


@pytest.mark.parametrize("patched", [True, False], ids=["patched", "upstream"])
def test_close_refused_frames(patched: bool) -> None:
    """A text frame that is not UTF-8: answered with close 1007 (RFC 6455 §7.4.1); upstream
    drops the connection without a close frame (the client sees 1006)."""
    with bare_server("close_refused_frames" if patched else "none") as server:
        client, _ = websocket(server)
        client.sendall(client_frame(0x1, b"\xff\xfe"))
        frame = server_frame(client)
        if patched:
            assert frame is not None and frame[0] == 0x8
            assert int.from_bytes(frame[1][:2]) == 1007
        else:
            assert frame is None


def test_upstream_closes_a_websocket_the_app_has_closed() -> None:
    """Once the app has closed its websocket, Hypercorn 0.18 closes the TCP connection without
    waiting for the client's answer (RFC 6455 §7.1.1): the earlier `close_ended_websockets`
    patch changed nothing here and went (docs/design.md, "Server patches")."""
    with bare_server("none") as server:
        client, _ = websocket(server, "/close")
        frame = server_frame(client)  # the server's close; this client never answers it
        assert frame is not None and frame[0] == 0x8
        assert ends_within(client, 3)


@pytest.mark.parametrize("patched", [True, False], ids=["patched", "upstream"])
def test_bound_connection_close(patched: bool) -> None:
    """A response ends while its client has stopped reading: the closing connection waits
    for the client to read what is left. Patched, shutdown aborts it within about a second;
    upstream, it holds the worker's shutdown for the whole graceful timeout (6 s here)."""
    graceful = 6.0
    with bare_server("bound_connection_close" if patched else "none", graceful) as server:
        client = server.connect(receive_buffer=4096)
        client.sendall(b"GET /body HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
        assert server.process.stdout is not None
        for line in server.process.stdout:  # the response is in the server, never read by us
            if "GET /body" in line:
                break
        else:
            pytest.fail("the bare server exited")
        took = server.stop()
        if patched:
            assert took < 3, took
        else:
            assert took >= graceful - 0.5, took
        client.close()


@pytest.mark.parametrize("patched", [True, False], ids=["patched", "upstream"])
def test_refuse_transfer_codings_with_400(patched: bool) -> None:
    """A Transfer-Encoding other than chunked: 400 and the connection closed (RFC 9112 §6.3);
    upstream h11 answers 501."""
    with bare_server("refuse_transfer_codings_with_400" if patched else "none") as server:
        client = server.connect()
        client.sendall(
            b"POST /body HTTP/1.1\r\nHost: 127.0.0.1\r\nTransfer-Encoding: gzip\r\n\r\nxyz"
        )
        status = client.recv(64).split(b"\r\n", 1)[0]
        assert status.startswith(b"HTTP/1.1 400" if patched else b"HTTP/1.1 501"), status
        assert ends_within(client, 3)


@pytest.mark.parametrize(
    ("patches", "negotiated"),
    [
        ("none", "permessage-deflate"),
        ("limit_websocket_compression", "server_no_context_takeover"),
        ("set_websocket_compression:false", None),
    ],
)
def test_websocket_compression(patches: str, negotiated: str | None) -> None:
    """A browser's permessage-deflate offer: upstream accepts it with context takeover (a zlib
    compressor and decompressor kept for the connection's life); limited, without context
    takeover (RFC 7692 §7.1.1); with WS_COMPRESSION=false (the default), declined."""
    with bare_server(patches) as server:
        _, head = websocket(server, extra=BROWSER_OFFER)
        extensions = [
            line.split(":", 1)[1].strip()
            for line in head.split("\r\n")
            if line.lower().startswith("sec-websocket-extensions:")
        ]
        if negotiated is None:
            assert extensions == []
        else:
            assert len(extensions) == 1 and negotiated in extensions[0]
            if patches == "none":
                assert "no_context_takeover" not in extensions[0]


@pytest.mark.parametrize(("offer", "writer"), [("", "wire"), (BROWSER_OFFER, "hypercorn")])
def test_websocket_wire_applies_only_to_plain_websockets(offer: str, writer: str) -> None:
    """`websocket_wire` finds the transport under a plain HTTP/1.1 websocket; once an
    extension is negotiated, frames go through Hypercorn (which compresses them)."""
    with bare_server("limit_websocket_compression") as server:
        client, _ = websocket(server, path="/wire", extra=offer)
        frame = server_frame(client)
        assert frame is not None
        assert frame[1] == writer.encode() or writer == "hypercorn"  # compressed: not readable
        if writer == "hypercorn":
            assert frame[1] != b"wire"


@pytest.mark.parametrize("patched", [True, False], ids=["patched", "upstream"])
def test_write_response_head_with_body(patched: bool) -> None:
    """The app starts its response, then sends the body 0.3 s later: patched, the head waits
    and the first bytes the client reads hold the whole response (one write); upstream writes
    the head alone first."""
    with bare_server("write_response_head_with_body" if patched else "none") as server:
        client = server.connect()
        client.sendall(b"GET /late-body HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        first = client.recv(4096)
        assert first.startswith(b"HTTP/1.1 200"), first
        if patched:
            assert first.endswith(b"\r\n\r\nok"), first
        else:
            assert first.endswith(b"\r\n\r\n"), first
            assert client.recv(4096) == b"ok"
        # The connection is kept alive and serves the next request alike.
        client.sendall(b"GET /late-body HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        response = b""
        while not response.endswith(b"ok"):
            chunk = client.recv(4096)
            assert chunk, response
            response += chunk
        assert response.startswith(b"HTTP/1.1 200"), response
        client.close()


@pytest.mark.parametrize("patched", [True, False], ids=["patched", "upstream"])
def test_a_held_head_is_written_when_the_app_abandons_its_response(patched: bool) -> None:
    """An app that fails after starting its response: the client still gets the head, then the
    connection ends (the body never comes), patched as upstream."""
    with bare_server("write_response_head_with_body" if patched else "none") as server:
        client = server.connect()
        client.sendall(b"GET /abandoned HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        received = b""
        while chunk := client.recv(4096):
            received += chunk
        assert received.startswith(b"HTTP/1.1 200"), received
        assert received.endswith(b"\r\n\r\n"), received
        client.close()


def get(client: socket.socket, path: str) -> bytes:
    """One keep-alive request on `client`; the response's body (the app's are short)."""
    client.sendall(f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".encode())
    response = b""
    while b"\r\n\r\n" not in response:
        chunk = client.recv(4096)
        assert chunk, response
        response += chunk
    head, _, body = response.partition(b"\r\n\r\n")
    length = int(next(line for line in head.split(b"\r\n") if line.startswith(b"content-length"))
                 .split(b":")[1])  # fmt: skip
    while len(body) < length:
        body += client.recv(4096)
    assert head.startswith(b"HTTP/1.1 200"), head
    return body


@pytest.mark.parametrize("patched", [True, False], ids=["patched", "upstream"])
def test_idle_timer_closes_idle_connections_and_keeps_busy_ones(patched: bool) -> None:
    """keep_alive_timeout 1 s: a connection idle for it is closed; one whose requests come
    more often is kept, each request restarting the wait; patched as upstream."""
    with bare_server("idle_timer" if patched else "none", keep_alive_timeout=1) as server:
        idle = server.connect()
        get(idle, "/tasks")
        turned_idle = time.monotonic()
        assert ends_within(idle, 3)
        assert 0.9 < time.monotonic() - turned_idle < 2.5
        busy = server.connect()
        for _ in range(6):  # 2.4 s of requests, 0.4 s apart: the client's pace, not a wait
            get(busy, "/tasks")
            time.sleep(0.4)
        get(busy, "/tasks")  # still the same connection
        assert ends_within(busy, 3)  # and closed in turn once idle


def _elapsed_until_closed(client: socket.socket, since: float, bound: float) -> float:
    assert ends_within(client, bound), "still open"
    return time.monotonic() - since


@pytest.mark.parametrize("patched", [True, False], ids=["patched", "upstream"])
def test_a_request_head_has_the_header_timeout_not_the_keep_alive(patched: bool) -> None:
    """Header timeout 1 s, keep-alive 30 s. Patched: a new connection that sends no request,
    or only part of its head, is closed after 1 s; so is a keep-alive connection 1 s after the
    first byte of a next request whose head never completes; a keep-alive connection that
    sends nothing is kept. Upstream, the one bound is the keep-alive: 30 s for all of them."""
    patches = "idle_timer,set_header_timeout:1" if patched else "none"
    with bare_server(patches, keep_alive_timeout=30) as server:
        silent = server.connect()
        opened = time.monotonic()
        trickling = server.connect()
        trickling.sendall(b"GET /tasks HTTP/1.1\r\n")
        kept = server.connect()
        get(kept, "/tasks")
        if not patched:
            assert not ends_within(silent, 2.5) and not ends_within(trickling, 0.1)
            return
        assert 0.9 < _elapsed_until_closed(silent, opened, 3) < 2.5
        assert _elapsed_until_closed(trickling, opened, 1) < 2.5
        # Idle past the header timeout, between requests: kept, and serves its next request.
        assert not ends_within(kept, 1.5)
        get(kept, "/tasks")
        kept.sendall(b"GET /tasks HTTP/1.1\r\nHost: x\r\n")  # and then nothing more
        head_begun = time.monotonic()
        assert 0.9 < _elapsed_until_closed(kept, head_begun, 3) < 2.5


@pytest.mark.parametrize("patched", [True, False], ids=["patched", "upstream"])
def test_idle_timer_closes_idle_connections_at_shutdown(patched: bool) -> None:
    """SIGTERM closes idle keep-alive connections at once (not after keep_alive_timeout, 30 s
    here), and the worker exits without waiting for them."""
    with bare_server("idle_timer" if patched else "none", keep_alive_timeout=30) as server:
        clients = [server.connect() for _ in range(3)]
        for client in clients:
            get(client, "/tasks")
        assert server.stop() < 3
        assert all(ends_within(client, 1) for client in clients)


@pytest.mark.parametrize("patched", [True, False], ids=["patched", "upstream"])
def test_idle_timer_keeps_no_task_per_idle_connection(patched: bool) -> None:
    """What the patch is for: upstream keeps two tasks per idle keep-alive connection (its idle
    task and the `wait_for` task inside it) besides the connection's own; patched, none."""
    with bare_server("idle_timer" if patched else "none") as server:
        probe = server.connect()
        before = int(get(probe, "/tasks"))
        clients = [server.connect() for _ in range(10)]
        for client in clients:
            get(client, "/tasks")
        extra = int(get(probe, "/tasks")) - before
        # Each connection has its own task (TCPServer.run); upstream two more.
        assert extra <= 10 + 1 if patched else extra >= 30, extra
        for client in clients:
            client.close()


@pytest.mark.parametrize("patched", [True, False], ids=["patched", "upstream"])
def test_response_headers_once_a_second(patched: bool, monkeypatch: pytest.MonkeyPatch) -> None:
    from hypercorn import config as hypercorn_config

    from app.hypercorn_patches import response_headers_once_a_second

    response_headers_once_a_second()
    formatted: list[float] = []
    real = hypercorn_config.format_date_time

    def counting(when: float) -> str:
        formatted.append(when)
        return str(real(when))

    monkeypatch.setattr(hypercorn_config, "format_date_time", counting)
    config = hypercorn_config.Config()
    method = hypercorn_config.Config.response_headers
    response_headers = method if patched else method.__wrapped__  # type: ignore[attr-defined]
    # Two calls within one second (retried if a second boundary fell between them).
    for _ in range(5):
        formatted.clear()
        started = time.time()
        first, second = response_headers(config, "h11"), response_headers(config, "h11")
        if int(started) == int(time.time()):
            break
    assert first == second and first is not second
    assert dict(first)[b"date"] == real(started).encode()
    assert len(formatted) == (1 if patched else 2) or (patched and not formatted)
    first.append((b"x", b"y"))  # a caller's extension stays its own
    assert (b"x", b"y") not in response_headers(config, "h11")


def answer_of(server: BareServer, request: bytes, wait: float = 2) -> bytes:
    """What the server sends back to `request` until it closes or `wait` s of silence."""
    client = server.connect()
    client.sendall(request)
    received = b""
    try:
        client.settimeout(wait)
        while chunk := client.recv(65536):
            received += chunk
    except (TimeoutError, ConnectionResetError):
        pass
    client.close()
    return received


def status_lines(received: bytes) -> list[bytes]:
    return [line for line in received.split(b"\r\n") if line.startswith(b"HTTP/1.")]


@pytest.mark.parametrize("patched", [True, False], ids=["patched", "upstream"])
def test_strict_request_line(patched: bool) -> None:
    """A lower-case method is 501, even beside refuse_transfer_codings_with_400 (methods are
    case-sensitive, RFC 9110 §9.1), and HTTP/2.0 in an HTTP/1 request line is 505; upstream
    upper-cases `get` and serves both."""
    patches = "refuse_transfer_codings_with_400" + (",strict_request_line" if patched else "")
    with bare_server(patches) as server:
        lower = answer_of(server, b"get /tasks HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        version = answer_of(server, b"GET /tasks HTTP/2.0\r\nHost: x\r\nConnection: close\r\n\r\n")
    if patched:
        assert status_lines(lower)[0].startswith(b"HTTP/1.1 501"), lower[:100]
        assert status_lines(version)[0].startswith(b"HTTP/1.1 505"), version[:100]
        with bare_server(patches) as server:  # no `Connection: close`: the server closes
            for line in (b"get /tasks HTTP/1.1", b"GET /tasks HTTP/2.0"):
                client = server.connect()
                client.sendall(line + b"\r\nHost: x\r\n\r\n")
                assert client.recv(64)[:12] in (b"HTTP/1.1 501", b"HTTP/1.1 505")
                assert closed_by_server(client)
                client.close()
    else:
        assert status_lines(lower)[0].startswith(b"HTTP/1.1 200"), lower[:100]
        assert status_lines(version)[0].startswith(b"HTTP/1.1 200"), version[:100]


@pytest.mark.parametrize("request_line", [b"GET /tasks HTTP/1.0", b"GET /tasks HTTP/1.1"])
@pytest.mark.parametrize("patched", [True, False], ids=["patched", "upstream"])
def test_ignore_data_after_the_last_request(patched: bool, request_line: bytes) -> None:
    """Requests pipelined behind a connection's last one (HTTP/1.0; `Connection: close`):
    the first is answered and the rest ignored (RFC 9112 §9.6); upstream h11 reads them as an
    error and Hypercorn answers 400 in the first one's place."""
    last = request_line + b"\r\nHost: x\r\nConnection: close\r\n\r\n"
    patches = "ignore_data_after_the_last_request" if patched else "none"
    with bare_server(patches) as server:
        received = answer_of(server, last * 3)
    statuses = [line.split(b" ")[1] for line in status_lines(received)]
    assert statuses == ([b"200"] if patched else [b"400"]), received[:200]


@pytest.mark.parametrize("patched", [True, False], ids=["patched", "upstream"])
def test_refuse_oversized_bodies_early(patched: bool) -> None:
    """Body limit 1000 bytes. A chunk size of 18 hex digits: 400 at once; a chunk of 2 GiB:
    413 at once; `Expect: 100-continue` over the limit: no 100 (the app answers 413 instead).
    Upstream waits for the chunk's bytes, and invites the refused body with a 100."""
    post = b"POST /tasks HTTP/1.1\r\nHost: x\r\n"
    chunked = post + b"Transfer-Encoding: chunked\r\n\r\n"
    patches = "set_body_limit:1000" + (",refuse_oversized_bodies_early" if patched else "")
    with bare_server(patches) as server:
        huge_size = answer_of(server, chunked + b"ffffffffffffffffff\r\nab", wait=1)
        huge_chunk = answer_of(server, chunked + b"7fffffff\r\nab", wait=1)
        expect = answer_of(
            server, post + b"Content-Length: 5000\r\nExpect: 100-continue\r\n\r\n", wait=1
        )
    if patched:
        assert status_lines(huge_size) == [b"HTTP/1.1 400 "], huge_size[:100]
        assert status_lines(huge_chunk) == [b"HTTP/1.1 413 "], huge_chunk[:100]
        assert expect == b"", expect[:100]
    else:
        assert huge_size == b"" and huge_chunk == b"", (huge_size[:100], huge_chunk[:100])
        assert expect.startswith(b"HTTP/1.1 100"), expect[:100]


@pytest.mark.parametrize("patched", [True, False], ids=["patched", "upstream"])
def test_lingering_close(patched: bool) -> None:
    """The app answers 413 (and closes) before reading a 64 MB upload. Patched, the server
    shuts its write side and drops the rest, so the client sends it all and reads the answer;
    upstream closes with the input unread, and the kernel's reset breaks the client's upload
    (and can eat the answer: curl lost a 413 in 4 to 10 of 50 tries)."""
    body = b"x" * (64 * 1024 * 1024)
    patches = "bound_connection_close,idle_timer" + (",lingering_close" if patched else "")
    with bare_server(patches) as server:
        client = server.connect()
        client.settimeout(10)
        try:
            client.sendall(
                b"POST /early HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n" % len(body)
            )
            client.sendall(body)
            client.shutdown(socket.SHUT_WR)
            received = b""
            while chunk := client.recv(65536):
                received += chunk
            outcome = status_lines(received)
        except (ConnectionResetError, BrokenPipeError) as error:
            outcome = [type(error).__name__.encode()]
        finally:
            client.close()
    if patched:
        assert outcome == [b"HTTP/1.1 413 "], outcome
    else:
        assert outcome[0] in (b"ConnectionResetError", b"BrokenPipeError"), outcome


@pytest.mark.parametrize("patched", [True, False], ids=["patched", "upstream"])
def test_bound_websocket_close(patched: bool) -> None:
    """A 17 MiB text frame, over Hypercorn's 16 MiB default limit, from a client that never
    answers the server's close. Both send 1009; patched, the app is told at once and the
    connection ends within about 4 s (2 s for the answer, 2 s of lingering). Upstream the app
    is not told and the connection stays open (the service's closed only at its idle timeout,
    60 s, and logged 1008)."""
    size = 17 * 1024 * 1024
    frame = bytes([0x81, 0x80 | 127]) + size.to_bytes(8) + b"\0\0\0\0" + b"x" * size
    patches = "idle_timer,lingering_close" + (",bound_websocket_close" if patched else "")
    with bare_server(patches) as server:
        client, _ = websocket(server)
        client.sendall(frame)
        reply = server_frame(client)
        assert reply is not None and reply[0] == 0x8, reply
        assert int.from_bytes(reply[1][:2]) == 1009
        assert ends_within(client, 6) is patched
        client.close()


@pytest.mark.parametrize("patched", [True, False], ids=["patched", "upstream"])
def test_end_refused_handshakes(patched: bool) -> None:
    """A frame sent with the handshake, before the 101: Hypercorn answers 400 either way;
    patched, the websocket app ends at once (it is told 1002) and the connection closes,
    upstream the app waits on and the connection stays open. So does one whose handshake
    is invalid (no Sec-WebSocket-Key)."""
    with bare_server("end_refused_handshakes" if patched else "none") as server:

        def running() -> int:
            answer = answer_of(server, b"GET /websockets HTTP/1.0\r\nHost: x\r\n\r\n")
            return int(answer.split(b"\r\n\r\n")[1])

        client = server.connect()
        client.sendall(HANDSHAKE.format(path="/echo", extra="").encode() + client_frame(0x1, b"hi"))
        assert client.recv(64).startswith(b"HTTP/1.1 400")
        ended = True
        try:
            poll(lambda: running() == 0, 3)
        except AssertionError:
            ended = False
        assert ended is patched
        assert closed_by_server(client) is patched
        client.close()
        invalid = server.connect()
        invalid.sendall(
            b"GET /echo HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n"
        )
        assert invalid.recv(64).startswith(b"HTTP/1.1 400")
        assert closed_by_server(invalid) is patched
        invalid.close()


def closed_by_server(client: socket.socket, within: float = 1.5) -> bool:
    """Whether the server closes `client` within `within` seconds (what else it sends is
    read and dropped); the wait is the bound under test, well under the idle timeouts."""
    deadline = time.monotonic() + within
    while (left := deadline - time.monotonic()) > 0:
        client.settimeout(left)
        try:
            if client.recv(65536) == b"":
                return True
        except TimeoutError:
            return False
        except OSError:
            return True
    return False
