"""app/uvicorn_server.py's guard and what it changes in Uvicorn, shown against upstream: when an
upgrade changes what a change relies on, the e2e suite (tests/e2e/test_server_options.py) fails
on Uvicorn; when upstream gains it, the "upstream" case here fails, and the change can go."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest
import uvicorn
from uvicorn import Config

from app import overrides, uvicorn_server
from app.client_gone import client_gone_of
from tests.e2e.server import PROJECT_ROOT, free_port
from tests.waiting import eventually, poll


def test_the_installed_versions_are_the_supported_ones() -> None:
    uvicorn_server.check_versions()


def test_an_unsupported_version_is_named(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(overrides, "version", lambda package: "9.9.9")
    with pytest.raises(uvicorn_server.UnsupportedUvicornVersion, match="uvicorn 9.9.9"):
        uvicorn_server.check_versions()


def test_upstream_uvicorn_keeps_a_silent_connection_past_any_header_timeout() -> None:
    """Stock Uvicorn (httptools) on a bare app: a connection that sends nothing is still open
    after 3 s (its keep-alive timer starts only after a response). The service's protocol
    closes it after HTTP_HEADER_TIMEOUT (tests/e2e/test_server_options.py)."""
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "uvicorn", "--http", "httptools", "--port", str(port),
         "--timeout-keep-alive", "1", "bench.apps.raw_asgi:app"],
        cwd=PROJECT_ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:

        def listening() -> bool:
            try:
                socket.create_connection(("127.0.0.1", port), 0.5).close()
            except OSError:
                return False
            return True

        poll(listening, 30)
        client = socket.create_connection(("127.0.0.1", port), 5)
        client.settimeout(3)
        started = time.monotonic()
        with pytest.raises(TimeoutError):
            client.recv(1)  # nothing, and no close, for 3 s
        assert time.monotonic() - started >= 2.9
        client.close()
    finally:
        process.terminate()
        process.wait(10)


# The `app.client_gone` extension on Uvicorn (app.client_gone): each request's scope offers
# it, and a connection lost calls back the requests not yet answered, in pipelining order.


async def serve_lifespan(receive: Any, send: Any) -> None:
    """A raw ASGI app's lifespan: started at once, stopped when told."""
    while (await receive())["type"] != "lifespan.shutdown":
        await send({"type": "lifespan.startup.complete"})
    await send({"type": "lifespan.shutdown.complete"})


class GoneRecorder:
    """What a raw ASGI app saw: per request path, whether the extension was offered, and an
    event set when the server called back; `/hold` waits until told the client is gone."""

    def __init__(self) -> None:
        self.offered: list[tuple[str, bool]] = []
        self.held = asyncio.Event()
        self.told: dict[str, asyncio.Event] = {}

    async def app(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            await serve_lifespan(receive, send)
            return
        path = scope["path"]
        client_gone = client_gone_of(scope)
        self.offered.append((path, client_gone is not None))
        told = self.told.setdefault(path, asyncio.Event())
        if client_gone is not None:
            client_gone.on_gone(told.set)
        if path.startswith("/hold"):
            self.held.set()
            await told.wait()
            return
        await send(
            {"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"2")]}
        )
        await send({"type": "http.response.body", "body": b"ok"})


@contextlib.asynccontextmanager
async def uvicorn_with(app: Any, protocol: type[Any]) -> AsyncIterator[int]:
    """Uvicorn serving `app` with `protocol` (asyncio loop), in this test's loop; its port."""
    listening = socket.socket()
    listening.bind(("127.0.0.1", 0))
    listening.listen(16)
    config = Config(
        app, http=protocol, lifespan="on", log_config=None, access_log=False, loop="asyncio",
        interface="asgi3",
    )  # fmt: skip
    server = uvicorn.Server(config)
    serving = asyncio.create_task(server.serve(sockets=[listening]))

    async def started() -> bool:
        return server.started

    try:
        await eventually(started, 10)
        yield listening.getsockname()[1]
    finally:
        server.should_exit = True
        await asyncio.wait_for(serving, 15)


def uvicorn_serving(recorder: GoneRecorder) -> contextlib.AbstractAsyncContextManager[int]:
    """Uvicorn with the service's protocol serving `recorder`'s app."""
    return uvicorn_with(recorder.app, uvicorn_server.ServiceHttpToolsProtocol)


async def test_uvicorn_tells_the_app_of_a_client_gone_mid_request() -> None:
    recorder = GoneRecorder()
    async with uvicorn_serving(recorder) as port:
        _, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"GET /hold HTTP/1.1\r\nHost: x\r\n\r\n")
        await writer.drain()
        await asyncio.wait_for(recorder.held.wait(), 5)
        writer.close()
        await asyncio.wait_for(recorder.told["/hold"].wait(), 5)
        assert recorder.offered == [("/hold", True)]


async def test_uvicorn_calls_back_only_the_requests_not_yet_answered() -> None:
    """Two answered keep-alive requests, then one held: the lost connection calls back the
    held one alone (the callbacks follow each request, answered ones dropped in order)."""
    recorder = GoneRecorder()
    async with uvicorn_serving(recorder) as port:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        for path in (b"/first", b"/second"):
            writer.write(b"GET " + path + b" HTTP/1.1\r\nHost: x\r\n\r\n")
            await writer.drain()
            await asyncio.wait_for(reader.readuntil(b"ok"), 5)
        writer.write(b"GET /hold HTTP/1.1\r\nHost: x\r\n\r\n")
        await writer.drain()
        await asyncio.wait_for(recorder.held.wait(), 5)
        writer.close()
        await asyncio.wait_for(recorder.told["/hold"].wait(), 5)
        assert not recorder.told["/first"].is_set() and not recorder.told["/second"].is_set()
        assert [offered for _, offered in recorder.offered] == [True, True, True]


async def test_uvicorn_calls_back_a_pipelined_request_once_it_is_in_flight() -> None:
    """A request answered at once with a second pipelined behind it, which is held: the lost
    connection calls back the second alone. (While a request is in flight Uvicorn reads
    nothing more from its connection, so a client that leaves then is only noticed when its
    answer is written, on Hypercorn's fast path likewise.)"""
    recorder = GoneRecorder()
    async with uvicorn_serving(recorder) as port:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"GET /first HTTP/1.1\r\nHost: x\r\n\r\nGET /hold HTTP/1.1\r\nHost: x\r\n\r\n")
        await writer.drain()
        await asyncio.wait_for(reader.readuntil(b"ok"), 5)
        await asyncio.wait_for(recorder.held.wait(), 5)
        writer.close()
        await asyncio.wait_for(recorder.told["/hold"].wait(), 5)
        assert not recorder.told["/first"].is_set()
        assert recorder.offered == [("/first", True), ("/hold", True)]


# A response's head goes out with its first body bytes (app.uvicorn_server.HeadWithFirstBody).


class RecordingTransport:
    """The connection's real transport, recording each write."""

    def __init__(self, transport: asyncio.Transport, writes: list[bytes]) -> None:
        self._transport = transport
        self.writes = writes

    def write(self, data: bytes) -> None:
        self.writes.append(bytes(data))
        self._transport.write(data)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._transport, name)


async def answering_app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """`/chunks`: two body messages and no content-length; `/echo`: the request's body back;
    `/broken`: a head, then an error; anything else: `ok` with its content-length."""
    if scope["type"] == "lifespan":
        await serve_lifespan(receive, send)
        return
    path = scope["path"]
    if path == "/chunks":
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"one", "more_body": True})
        await send({"type": "http.response.body", "body": b"two"})
        return
    if path == "/broken":
        await send(
            {"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"9")]}
        )
        raise RuntimeError("the app failed after its head")
    body = b"ok"
    if path == "/echo":
        body = (await receive())["body"]
    headers = [(b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def uvicorn_recording(writes: list[bytes]) -> contextlib.AbstractAsyncContextManager[int]:
    """Uvicorn with the service's protocol serving `answering_app`, its writes recorded."""

    class Recording(uvicorn_server.ServiceHttpToolsProtocol):
        def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
            super().connection_made(RecordingTransport(transport, writes))  # type: ignore[arg-type]

    return uvicorn_with(answering_app, Recording)


async def recorded_answer(request: bytes, until: bytes) -> tuple[bytes, list[bytes]]:
    """`request` sent to `answering_app` on the service's protocol: the answer up to `until`,
    and the server's writes."""
    writes: list[bytes] = []
    async with uvicorn_recording(writes) as port:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(request)
        answer = await asyncio.wait_for(reader.readuntil(until), 5)
        writer.close()
    return answer, writes


async def test_uvicorn_writes_a_response_head_with_its_body() -> None:
    answer, writes = await recorded_answer(b"GET /x HTTP/1.1\r\nHost: x\r\n\r\n", b"\r\n\r\nok")
    assert answer.startswith(b"HTTP/1.1 200 OK\r\n") and b"content-length: 2\r\n" in answer
    assert len(writes) == 1 and writes[0] == answer


async def test_uvicorn_writes_a_chunked_answer_head_with_its_first_chunk() -> None:
    answer, writes = await recorded_answer(b"GET /chunks HTTP/1.1\r\nHost: x\r\n\r\n", b"0\r\n\r\n")
    head, _, body = answer.partition(b"\r\n\r\n")
    assert b"transfer-encoding: chunked" in head
    assert body == b"3\r\none\r\n3\r\ntwo\r\n0\r\n\r\n"
    assert writes == [head + b"\r\n\r\n3\r\none\r\n", b"3\r\ntwo\r\n0\r\n\r\n"]


async def test_uvicorn_writes_a_head_answer_at_once() -> None:
    """A HEAD answer has no body write to wait for: its head goes out as Uvicorn writes it,
    and the next request on the connection is answered after it."""
    writes: list[bytes] = []
    async with uvicorn_recording(writes) as port:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"HEAD /x HTTP/1.1\r\nHost: x\r\n\r\n")
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
        writer.write(b"GET /x HTTP/1.1\r\nHost: x\r\n\r\n")
        answer = await asyncio.wait_for(reader.readuntil(b"\r\n\r\nok"), 5)
        writer.close()
    assert head.startswith(b"HTTP/1.1 200 OK\r\n") and b"content-length: 2\r\n" in head
    assert writes == [head, answer]


async def test_uvicorn_sends_100_continue_before_the_body_arrives() -> None:
    writes: list[bytes] = []
    async with uvicorn_recording(writes) as port:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(
            b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n"
        )
        # The client sends its body only once told to continue.
        interim = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
        assert interim == uvicorn_server.CONTINUE
        writer.write(b"hello")
        answer = await asyncio.wait_for(reader.readuntil(b"\r\n\r\nhello"), 5)
        writer.close()
    assert answer.startswith(b"HTTP/1.1 200 OK\r\n")
    assert writes == [uvicorn_server.CONTINUE, answer]


async def test_uvicorn_writes_the_head_of_an_answer_cut_short_before_closing() -> None:
    """An app failing after its head: the head is written, then the connection closed, as
    Uvicorn did with the head written at once."""
    writes: list[bytes] = []
    async with uvicorn_recording(writes) as port:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"GET /broken HTTP/1.1\r\nHost: x\r\n\r\n")
        received = await asyncio.wait_for(reader.read(), 5)  # up to the close
        writer.close()
    assert received.startswith(b"HTTP/1.1 200 OK\r\n") and received.endswith(b"\r\n\r\n")
    assert b"content-length: 9\r\n" in received
    assert writes == [received]
