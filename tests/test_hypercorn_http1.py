"""app/hypercorn_http1.py on a real Hypercorn server (asyncio worker, in this test's loop,
every patch of app/hypercorn_patches.py applied) over raw loopback sockets.

The differential cases send the same bytes to the server with `HTTP1_PARSER=httptools` and
with `h11`, to an app that echoes the request it was given: the fast path must give the app
the same request and the client the same answer as h11 does (the date header aside, and the
order of the headers h11 moves to the end). The other cases show what is the fast path's own:
which requests it keeps, where it hands a connection to h11, and how it writes responses.
"""

from __future__ import annotations

import asyncio
import json
import random
import re
import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any, Literal

import pytest
from hypercorn.asyncio.run import worker_serve
from hypercorn.asyncio.tcp_server import TCPServer
from hypercorn.config import Config, Sockets
from hypercorn.events import Closed, RawData
from hypercorn.protocol import ProtocolWrapper
from hypercorn.utils import wrap_app

from app import hypercorn_http1, hypercorn_patches
from app.client_gone import client_gone_of
from app.hypercorn_http1 import HttpToolsH11Protocol

STATUS = re.compile(rb"HTTP/1\.1 (\d{3}) \r\n")
DATE = re.compile(rb"(?im)^date: [^\r]*\r\n")


class Recorder:
    """What the app saw, and the protocol instances' hand-offs."""

    def __init__(self) -> None:
        self.disconnects = 0
        self.send_errors: list[str] = []
        self.disconnected = asyncio.Event()
        self.request_held = asyncio.Event()
        self.release = asyncio.Event()
        self.offered_client_gone: list[bool] = []  # per `/wait-for-client-gone` request
        self.told_client_gone = asyncio.Event()
        # What the worker read from each client port, and which ports it saw close: a test
        # splitting a request waits for each piece to be read before it sends the next.
        self.bytes_read: dict[int, int] = {}
        self.closed: set[int] = set()
        self._changed: dict[int, asyncio.Event] = {}

    def event(self, port: int, event: Any) -> None:
        """Note an event the worker's connection from `port` handles (before it is handled: a
        protocol waiting inside it still read its bytes)."""
        if isinstance(event, RawData):
            self.bytes_read[port] = self.bytes_read.get(port, 0) + len(event.data)
        elif isinstance(event, Closed):
            self.closed.add(port)
        self._changed.setdefault(port, asyncio.Event()).set()

    def closing(self, port: int) -> None:
        """The worker closes its connection from `port` (what arrives later is dropped, while
        the lingering close drains it)."""
        self.closed.add(port)
        self._changed.setdefault(port, asyncio.Event()).set()

    async def read_by_worker(self, port: int, count: int) -> bool:
        """Wait until the worker has read `count` bytes from `port` (True), or closed that
        connection (False: it reads nothing more)."""
        changed = self._changed.setdefault(port, asyncio.Event())
        async with asyncio.timeout(5):
            while self.bytes_read.get(port, 0) < count and port not in self.closed:
                changed.clear()
                await changed.wait()
        return port not in self.closed


async def echo_app(scope: dict[str, Any], receive: Any, send: Any, recorder: Recorder) -> None:
    if scope["type"] == "lifespan":
        while (await receive())["type"] != "lifespan.shutdown":
            await send({"type": "lifespan.startup.complete"})
        await send({"type": "lifespan.shutdown.complete"})
        return
    if scope["type"] == "websocket":  # refused: Hypercorn answers the handshake with 403
        await receive()
        await send({"type": "websocket.close"})
        return
    path = scope["path"]
    if path == "/wait-for-disconnect":
        while (await receive())["type"] != "http.disconnect":
            pass
        recorder.disconnects += 1
        recorder.disconnected.set()
        return
    if path == "/wait-for-client-gone":  # told through app.client_gone, not `receive`
        client_gone = client_gone_of(scope)
        recorder.offered_client_gone.append(client_gone is not None)
        if client_gone is not None:
            client_gone.on_gone(recorder.told_client_gone.set)
        recorder.request_held.set()
        await recorder.told_client_gone.wait()
        return
    if path == "/wait-for-release":
        recorder.request_held.set()
        await recorder.release.wait()
    body = b""
    while True:
        message = await receive()
        body += message.get("body", b"")
        if not message.get("more_body"):
            break
    if path == "/chunks":  # no content-length: chunked on HTTP/1.1, close-delimited on 1.0
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"one,", "more_body": True})
        await send({"type": "http.response.body", "body": b"", "more_body": True})
        await send({"type": "http.response.body", "body": b"two"})
        return
    if path == "/no-content":
        await send({"type": "http.response.start", "status": 204, "headers": []})
        await send({"type": "http.response.body", "body": b""})
        return
    if path == "/close":
        headers = [(b"content-length", b"2"), (b"connection", b"close")]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": b"ok"})
        return
    if path in ("/split-header", "/nul-header", "/bad-name", "/too-long"):
        headers = {
            "/split-header": [(b"x-a", b"1\r\nx-injected: 1")],
            "/nul-header": [(b"x-a", b"1\x00")],
            "/bad-name": [(b"x a", b"1")],
            "/too-long": [(b"content-length", b"2")],
        }[path]
        try:
            await send({"type": "http.response.start", "status": 200, "headers": headers})
            await send({"type": "http.response.body", "body": b"12345"})
        except Exception as error:  # the server refused what the app sent
            recorder.send_errors.append(type(error).__name__)
            raise
        return
    answer = json.dumps(
        {
            "method": scope["method"],
            "path": scope["path"],
            "raw_path": scope["raw_path"].decode("latin-1"),
            "query_string": scope["query_string"].decode("latin-1"),
            "http_version": scope["http_version"],
            "headers": [[n.decode("latin-1"), v.decode("latin-1")] for n, v in scope["headers"]],
            "body": body.decode("latin-1"),
        }
    ).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", b"%d" % len(answer))]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": answer})


class Served:
    def __init__(self, port: int, recorder: Recorder, stop: asyncio.Event) -> None:
        self.port = port
        self.recorder = recorder
        self.stop = stop  # the worker's shutdown trigger

    async def send_pieces(self, pieces: list[bytes]) -> bytes:
        """Each piece in a write of its own, sent once the worker read the one before (each
        in a read of its own: the split under test); what came back, as `exchange` reads it."""
        reader, writer = await asyncio.open_connection("127.0.0.1", self.port)
        port = writer.get_extra_info("sockname")[1]
        try:
            sent = 0
            for piece in pieces:
                writer.write(piece)
                await writer.drain()
                sent += len(piece)
                if not await self.recorder.read_by_worker(port, sent):
                    break  # closed by the worker: the rest would never be read
            return await _read_until_closed(reader, silence=2)
        finally:
            writer.close()

    async def refused_within(self, seconds: float) -> None:
        """Wait until a new connection is refused (the worker stopped listening)."""
        deadline = asyncio.get_running_loop().time() + seconds
        while True:
            try:
                _, writer = await asyncio.open_connection("127.0.0.1", self.port)
            except OSError:
                return
            writer.close()
            assert asyncio.get_running_loop().time() < deadline, "still accepting connections"
            await asyncio.sleep(0.05)  # poll interval

    async def exchange(
        self, request: bytes, *, pause_after: bytes | None = None, silence: float = 2
    ) -> bytes:
        """Send `request` (in two writes, split after `pause_after` when given); everything
        that came back until the server closed ("<closed>"), or until `silence` seconds
        without a byte ("<open>": a connection kept for a next request)."""
        reader, writer = await asyncio.open_connection("127.0.0.1", self.port)
        try:
            if pause_after is not None:
                first, _, rest = request.partition(pause_after)
                writer.write(first + pause_after)
                await writer.drain()
                # The rest once the worker read the first part: a later read, the split under test.
                port = writer.get_extra_info("sockname")[1]
                if await self.recorder.read_by_worker(port, len(first + pause_after)):
                    writer.write(rest)
            else:
                writer.write(request)
            await writer.drain()
            return await _read_until_closed(reader, silence)
        finally:
            writer.close()


async def _read_until_closed(reader: asyncio.StreamReader, silence: float) -> bytes:
    received = b""
    while True:
        try:
            chunk = await asyncio.wait_for(reader.read(65536), silence)
        except TimeoutError:
            return received + b"<open>"
        if not chunk:
            return received + b"<closed>"
        received += chunk


@asynccontextmanager
async def served(
    parser: Literal["httptools", "h11"], **config_values: Any
) -> AsyncIterator[Served]:
    """A Hypercorn worker with every patch, HTTP/1 on `parser`, serving `echo_app`."""
    hypercorn_patches.patch_hypercorn()
    hypercorn_http1.use_http1_parser(parser)
    recorder = Recorder()
    config = Config()
    config.accesslog = None
    for name, value in config_values.items():
        setattr(config, name, value)
    listening = socket.socket()
    listening.bind(("127.0.0.1", 0))
    listening.listen(64)
    listening.setblocking(False)
    stop = asyncio.Event()

    async def app(scope: Any, receive: Any, send: Any) -> None:
        await echo_app(scope, receive, send, recorder)

    handle = ProtocolWrapper.handle

    async def recorded_handle(protocol: ProtocolWrapper, event: Any) -> None:
        recorder.event(protocol.client[1] if protocol.client else 0, event)
        await handle(protocol, event)

    close = TCPServer._close

    async def recorded_close(tcp_server: TCPServer) -> None:
        peer = tcp_server.writer.get_extra_info("peername")
        recorder.closing(peer[1] if peer else 0)
        await close(tcp_server)

    ProtocolWrapper.handle = recorded_handle  # type: ignore[method-assign]
    TCPServer._close = recorded_close  # type: ignore[method-assign]

    serving = asyncio.create_task(
        worker_serve(
            wrap_app(app, config.wsgi_max_body_size, "asgi"),
            config,
            sockets=Sockets([], [listening], []),
            shutdown_trigger=stop.wait,
        )
    )
    try:
        yield Served(listening.getsockname()[1], recorder, stop)
    finally:
        stop.set()
        await asyncio.wait_for(serving, 10)
        ProtocolWrapper.handle = handle  # type: ignore[method-assign]
        TCPServer._close = close  # type: ignore[method-assign]
        hypercorn_http1.use_http1_parser("h11")


def normalized(received: bytes) -> bytes:
    """The answer with its date headers dropped and each head's headers sorted (h11 moves the
    headers it sets, `connection` and `transfer-encoding`, to the end of the head)."""
    received = DATE.sub(b"", received)
    parts = re.split(rb"(HTTP/1\.1 \d{3} [^\r]*\r\n)((?:[^\r\n]+\r\n)*)\r\n", received)
    out = []
    for index, part in enumerate(parts):
        if index % 3 == 2:
            part = b"".join(sorted(part.splitlines(keepends=True)))
        out.append(part)
    return b"|".join(out)


GET = b"GET /echo?a=1 HTTP/1.1\r\nHost: x\r\n\r\n"
DIFFERENTIAL = {
    "keep-alive-then-close": GET + b"GET /b HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    "pipelined": GET * 3,
    "content-length-body": b"POST /p HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello" + GET,
    "chunked-body": b"POST /p HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
    b"5\r\nhello\r\n0\r\n\r\n" + GET,
    "fast-then-chunked": GET + b"POST /p HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
    b"2\r\nhi\r\n0\r\n\r\n",
    "lower-case-method": b"get /echo HTTP/1.1\r\nHost: x\r\n\r\n",
    "http-2-0": b"GET /echo HTTP/2.0\r\nHost: x\r\n\r\n",
    "http-1-0": b"GET /echo HTTP/1.0\r\n\r\n",
    "http-1-0-pipelined": b"GET /echo HTTP/1.0\r\nConnection: keep-alive\r\n\r\n" * 3,
    "http-1-0-chunks": b"GET /chunks HTTP/1.0\r\n\r\n",
    "close-then-more": b"GET /a HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n" + GET,
    "bare-lf": b"GET /echo HTTP/1.1\nHost: x\n\n",
    "leading-blank-line": b"\r\n" + GET,
    "chunks": b"GET /chunks HTTP/1.1\r\nHost: x\r\n\r\n" + GET,
    "head": b"HEAD /echo HTTP/1.1\r\nHost: x\r\n\r\nHEAD /chunks HTTP/1.1\r\nHost: x\r\n\r\n" + GET,
    "no-content": b"GET /no-content HTTP/1.1\r\nHost: x\r\n\r\n" + GET,
    "app-closes": b"GET /close HTTP/1.1\r\nHost: x\r\n\r\n" + GET,
    "expect-100": b"POST /p HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\nExpect: 100-continue\r\n"
    b"\r\nhi",
    "space-before-colon": b"GET /echo HTTP/1.1\r\nHost : x\r\n\r\n",
    "no-host": b"GET /echo HTTP/1.1\r\nAccept: */*\r\n\r\n",
    "folded-header": b"GET /echo HTTP/1.1\r\nHost: x\r\nX-A: a\r\n b\r\n\r\n",
    "two-content-lengths": b"POST /p HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n"
    b"Content-Length: 2\r\n\r\nhi",
    "length-and-chunked": b"POST /p HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\n"
    b"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
    "whitespace-in-values": b"GET /echo HTTP/1.1\r\nHost:  x \r\nX-A:\ta b\t\r\nX-Empty:\r\n\r\n",
    "absolute-form": b"GET http://x/echo?q=%20 HTTP/1.1\r\nHost: x\r\n\r\n",
    "encoded-path": b"GET /a%2Fb/%C3%A9?x=%26 HTTP/1.1\r\nHost: x\r\n\r\n",
    "options-star": b"OPTIONS * HTTP/1.1\r\nHost: x\r\n\r\n",
    "obs-text": b"GET /echo HTTP/1.1\r\nHost: x\r\nX-A: caf\xe9\r\n\r\n",
    "control-byte": b"GET /echo HTTP/1.1\r\nHost: x\r\nX-A: a\x01b\r\n\r\n",
    "space-in-target": b"GET /a b HTTP/1.1\r\nHost: x\r\n\r\n",
    "non-ascii-target": b"GET /caf\xc3\xa9?q=\xff HTTP/1.1\r\nHost: x\r\n\r\n",
    "websocket-upgrade": b"GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n"
    b"Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
    b"Sec-WebSocket-Version: 13\r\n\r\n",
    "split-header": b"GET /split-header HTTP/1.1\r\nHost: x\r\n\r\n",
    "nul-header": b"GET /nul-header HTTP/1.1\r\nHost: x\r\n\r\n",
    "bad-header-name": b"GET /bad-name HTTP/1.1\r\nHost: x\r\n\r\n",
}


# Behind each case: a request that closes the connection, so that an exchange ends with the
# server's close whether the case's own requests left the connection open or not.
LAST = b"GET /last HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"


async def test_the_fast_path_answers_as_h11_does() -> None:
    """Every case of DIFFERENTIAL, sent whole and split after its first line, to both parsers."""
    answers: dict[str, dict[str, tuple[bytes, bytes]]] = {}
    errors: dict[str, list[str]] = {}
    for parser in ("h11", "httptools"):
        async with served(parser) as server:

            async def both_ways(request: bytes, server: Served = server) -> tuple[bytes, bytes]:
                whole, split = await asyncio.gather(
                    server.exchange(request + LAST),
                    server.exchange(request + LAST, pause_after=b"\r\n"),
                )
                return normalized(whole), normalized(split)

            results = await asyncio.gather(*(both_ways(r) for r in DIFFERENTIAL.values()))
            answers[parser] = dict(zip(DIFFERENTIAL, results, strict=True))
            errors[parser] = sorted(server.recorder.send_errors)
    differing = {
        case: (answers["h11"][case], answers["httptools"][case])
        for case in DIFFERENTIAL
        if answers["h11"][case] != answers["httptools"][case]
    }
    assert differing == {}
    assert errors["httptools"] == errors["h11"] == ["LocalProtocolError"] * 6
    unanswered = [case for case, (whole, _) in answers["h11"].items() if not STATUS.search(whole)]
    assert unanswered == []


async def test_random_sequences_split_at_random_answer_as_h11_does() -> None:
    """Sequences of 1-3 DIFFERENTIAL cases on one connection, cut at 1-6 random points, each
    piece its own write: the two parsers answer alike (a fixed seed, so a failure repeats)."""
    chooser = random.Random(30)
    cases = []
    for _ in range(80):
        data = (
            b"".join(
                DIFFERENTIAL[k]
                for k in chooser.sample(list(DIFFERENTIAL), 3)[: chooser.randint(1, 3)]
            )
            + LAST
        )
        cuts = sorted(chooser.sample(range(1, len(data)), chooser.randint(1, 6)))
        cases.append([data[a:b] for a, b in zip([0, *cuts], [*cuts, len(data)], strict=True)])
    answers = {}
    for parser in ("h11", "httptools"):
        async with served(parser) as server:
            answers[parser] = [
                normalized(answer)
                for answer in await asyncio.gather(*(server.send_pieces(c) for c in cases))
            ]
    differing = [
        (pieces, h11, fast)
        for pieces, h11, fast in zip(cases, answers["h11"], answers["httptools"], strict=True)
        if h11 != fast
    ]
    assert differing == []


async def test_ordinary_requests_stay_on_the_fast_path(monkeypatch) -> None:
    """Keep-alive, pipelined and Content-Length requests never reach h11."""
    handed_off: list[bytes] = []
    original = HttpToolsH11Protocol._hand_off

    async def hand_off(self: HttpToolsH11Protocol) -> None:
        handed_off.append(bytes(self.unparsed))
        await original(self)

    monkeypatch.setattr(HttpToolsH11Protocol, "_hand_off", hand_off)
    async with served("httptools") as server:
        received = await server.exchange(
            GET * 3
            + b"POST /p HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello"
            + b"GET /chunks HTTP/1.1\r\nHost: x\r\n\r\n"
            + b"GET /last HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
        )
        assert STATUS.findall(received) == [b"200"] * 6, received[-300:]
        assert received.endswith(b"<closed>")
        assert b'"body": "hello"' in received
        assert b"Transfer-Encoding: chunked\r\n\r\n4\r\none,\r\n3\r\ntwo\r\n0\r\n\r\n" in received
        assert handed_off == []
        chunked = b"POST /p HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
        await server.exchange(GET + chunked + b"0\r\n\r\n" + LAST)
        assert handed_off == [chunked + b"0\r\n\r\n" + LAST]  # from the request h11 is given


async def test_a_body_arriving_in_pieces_reaches_the_app_whole() -> None:
    body = b"x" * 200_000
    async with served("httptools") as server:
        head = b"POST /p HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n" % len(body)
        received = await server.exchange(head + body + LAST, pause_after=b"x" * 1000)
        assert STATUS.findall(received) == [b"200", b"200"]
        assert b'"body": "' + body + b'"' in received


async def test_an_incomplete_head_past_the_limit_is_431() -> None:
    async with served("httptools", h11_max_incomplete_size=4096) as server:
        received = await server.exchange(b"GET / HTTP/1.1\r\nHost: x\r\nX-Big: " + b"y" * 5000)
        assert STATUS.findall(received) == [b"431"]
        assert received.endswith(b"<closed>")


async def test_a_response_header_that_could_split_the_head_is_refused() -> None:
    """The app's send raises h11's LocalProtocolError; the client gets Hypercorn's 500 and
    none of the app's header bytes."""
    async with served("httptools") as server:
        for path in (b"/split-header", b"/nul-header", b"/bad-name"):
            received = await server.exchange(b"GET %s HTTP/1.1\r\nHost: x\r\n\r\n" % path)
            assert STATUS.findall(received) == [b"500"], received
            assert b"x-injected" not in received and b"x-a" not in received
        assert server.recorder.send_errors == ["LocalProtocolError"] * 3


async def test_a_body_longer_than_its_content_length_is_refused_and_the_connection_ends() -> None:
    async with served("httptools") as server:
        received = await server.exchange(b"GET /too-long HTTP/1.1\r\nHost: x\r\n\r\n" + GET)
        assert server.recorder.send_errors == ["LocalProtocolError"]
        assert b"12345" not in received and received.endswith(b"<closed>")
        assert STATUS.findall(received) == [b"200"]  # the next request is not read


async def test_the_last_keep_alive_request_says_close() -> None:
    async with served("httptools", keep_alive_max_requests=2) as server:
        received = await server.exchange(GET * 3)
        assert STATUS.findall(received) == [b"200", b"200"]
        assert received.count(b"connection: close\r\n") == 1 and received.endswith(b"<closed>")


async def test_a_client_that_goes_away_mid_request_disconnects_the_app() -> None:
    async with served("httptools") as server:
        reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
        writer.write(b"GET /wait-for-disconnect HTTP/1.1\r\nHost: x\r\n\r\n")
        await writer.drain()
        writer.close()
        await asyncio.wait_for(server.recorder.disconnected.wait(), 5)
        assert server.recorder.disconnects == 1


@pytest.mark.parametrize("parser", ["httptools", "h11"])
async def test_a_client_that_goes_away_is_told_to_the_app_through_client_gone(
    parser: Literal["httptools", "h11"],
) -> None:
    """The fast path offers app.client_gone and calls back when the client leaves mid-request;
    h11's path (Hypercorn's own `HTTPStream`) does not offer it."""
    async with served(parser) as server:
        _, writer = await asyncio.open_connection("127.0.0.1", server.port)
        writer.write(b"GET /wait-for-client-gone HTTP/1.1\r\nHost: x\r\n\r\n")
        await writer.drain()
        await asyncio.wait_for(server.recorder.request_held.wait(), 5)
        writer.close()
        offered = parser == "httptools"
        assert server.recorder.offered_client_gone == [offered]
        if offered:
            await asyncio.wait_for(server.recorder.told_client_gone.wait(), 5)
        else:
            server.recorder.told_client_gone.set()  # lets the request end


async def test_a_request_in_flight_at_shutdown_is_answered_and_its_connection_closed() -> None:
    """The worker's graceful shutdown: the request in flight is answered, then the connection
    ends; the request pipelined behind it is not read."""
    async with served("httptools") as server:
        reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
        writer.write(b"GET /wait-for-release HTTP/1.1\r\nHost: x\r\n\r\n" + GET)
        await writer.drain()
        await asyncio.wait_for(server.recorder.request_held.wait(), 5)
        server.stop.set()
        await server.refused_within(5)  # the worker closes its listener once it shuts down
        server.recorder.release.set()
        received = await asyncio.wait_for(reader.read(), 5)  # until the server's EOF
        writer.close()
        assert STATUS.findall(received) == [b"200"], received
