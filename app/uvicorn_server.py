"""The faster server option: Uvicorn with httptools and uvloop (`serve --server uvicorn`,
`SERVER=uvicorn`), run by the same supervisor as Hypercorn (app/supervisor.py), with the
properties the service relies on (docs/design.md, "Server options").

Why Uvicorn and not Granian (issue 30; bench/peers.py measures both under FastAPI): the two
parse HTTP/1.1 in compiled code for about the same CPU (a raw ASGI hello on one worker: 26 us
per request on Uvicorn, 22-24 on Granian, 156 on Hypercorn), but Uvicorn runs inside this
service's own worker processes and event loop, so the supervisor keeps what it gives Hypercorn:
websockets closed with 1001 before the graceful stop, a dead worker replaced on its own sockets,
`SO_REUSEPORT` sockets per worker, the collector's thresholds. Granian runs its own Rust worker
manager, and has no websocket frame limit to set.

What this module adds to Uvicorn 0.55 (`ServiceHttpToolsProtocol`, `ServiceServer`; each
shown by tests/test_uvicorn_server.py):
- a request head must arrive within `HTTP_HEADER_TIMEOUT`, counted from a new connection's
  start or from the first byte of a keep-alive connection's next request (Uvicorn bounds only
  the keep-alive wait: a slowloris connection trickling a byte a second was kept forever);
- a request head larger than `h11_max_incomplete_size` (hypercorn.toml, 16 KiB) is answered
  431 and the connection closed (Uvicorn's httptools path has no bound: it buffered any size);
- a websocket's close frame is queued even while its client is not reading (a 1013 reaches a
  stalled client, as on Hypercorn), and the wait for the client's close is 2 s, not 10;
- the worker's shutdown is the supervisor's (the app's drain hooks first), not Uvicorn's own
  signal handlers;
- each request's scope offers the `app.client_gone` extension (app.client_gone): a client that
  leaves before its answer is complete is told to the app directly, not through a task of the
  app's awaiting `receive()`;
- a response's head goes out with its first body bytes in one write (`HeadWithFirstBody`), as
  on Hypercorn's fast path: Uvicorn wrote the head on its own, a TCP segment of its own.
Everything else comes from the app (admission: body timeouts and sizes, Content-Length with
Transfer-Encoding; the websocket close codes) or is Uvicorn's (keep-alive, the websocket frame
limit, permessage-deflate on or off).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from collections import deque
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

import httptools
from uvicorn import Config, Server
from uvicorn.protocols.http.httptools_impl import STATUS_LINE, HttpToolsProtocol
from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol

from app.client_gone import ClientGone, offer
from app.overrides import unsupported
from app.settings import Settings

# The packages this module changes or relies on; the releases each supports are
# app/overrides.py's (and pyproject.toml's bounds).
SERVER_PACKAGES = ("uvicorn", "httptools", "uvloop")
HEAD_TOO_LARGE = 431

log = logging.getLogger("app")


class UnsupportedUvicornVersion(RuntimeError):
    """An installed Uvicorn, httptools or uvloop this module was not written for."""


def check_versions() -> None:
    """Raises `UnsupportedUvicornVersion` naming the first package whose installed version
    this module does not support (app.overrides)."""
    problems = unsupported(SERVER_PACKAGES)
    if problems:
        raise UnsupportedUvicornVersion(
            f"{problems[0]}: install a supported version, or serve with --server hypercorn"
        )


class _HeadTooLarge(Exception):
    """Raised from a parser callback: the head passed the limit."""


class ServiceHttpToolsProtocol(HttpToolsProtocol):
    """Uvicorn's httptools protocol with a header timeout and a bound on the head's size (the
    module docstring). Set `header_timeout` and `max_head_bytes` on the class
    (`uvicorn_config` does)."""

    header_timeout = 5.0
    max_head_bytes = 16384

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._header_timer: asyncio.TimerHandle | None = None
        self._head_bytes = 0
        self._head_complete = True
        # Each request not yet answered, oldest first (pipelining): app.client_gone.
        self._client_gone: deque[ClientGone] = deque()

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm_header_timer()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm_header_timer()
        unanswered, self._client_gone = self._client_gone, deque()
        super().connection_lost(exc)
        for client_gone in unanswered:
            client_gone.notify()

    def on_response_complete(self) -> None:
        if self._client_gone:
            self._client_gone.popleft()
        super().on_response_complete()

    def data_received(self, data: bytes) -> None:
        # Uvicorn's own (0.55), with the head's size bound and the header timer.
        self._unset_keepalive_if_required()
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError as error:
            if isinstance(error.__context__, _HeadTooLarge):
                self._answer_and_close(HEAD_TOO_LARGE, "request head too large")
                return
            msg = "Invalid HTTP request received."
            self.logger.warning(msg)
            self.send_400_response(msg)
            return
        except httptools.HttpParserUpgrade:
            self._disarm_header_timer()
            if self._should_upgrade():
                self.handle_websocket_upgrade()
            else:
                self._unsupported_upgrade_warning()
            return
        if not self._head_complete and self._header_timer is None:
            self._arm_header_timer()  # a next request began: its head has the header timeout

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._head_bytes = 0
        self._head_complete = False
        self._client_gone.append(offer(self.scope))  # type: ignore[arg-type]  # a TypedDict

    def on_url(self, url: bytes) -> None:
        self._count_head(len(url))
        super().on_url(url)

    def on_header(self, name: bytes, value: bytes) -> None:
        self._count_head(len(name) + len(value) + 4)
        super().on_header(name, value)

    def on_headers_complete(self) -> None:
        self._head_complete = True
        self._disarm_header_timer()
        url = self.url
        if (
            url[:1] != b"/"
            and url != b"*"
            and not url[:8].lower().startswith((b"http://", b"https://"))
        ):
            # RFC 9112 §3.2.2: an absolute-form target is an http(s) URI (Uvicorn kept the path
            # of `ftp://evil/x`); raised in a parser callback, it is Uvicorn's 400.
            raise ValueError("the request target is neither a path nor an http(s) URI")
        previous = self.cycle
        super().on_headers_complete()
        cycle = self.cycle
        # A new request (not an upgrade) whose answer has a body to go with its head.
        if cycle is not previous and self.scope["method"] != "HEAD":
            cycle.transport = HeadWithFirstBody(cycle.transport)  # type: ignore[assignment]

    def _count_head(self, size: int) -> None:
        self._head_bytes += size
        if self._head_bytes > self.max_head_bytes:
            raise _HeadTooLarge

    def _answer_and_close(self, status: int, message: str) -> None:
        body = message.encode()
        self.transport.write(
            b"".join(
                [
                    STATUS_LINE[status],
                    *(name + b": " + value + b"\r\n" for name, value in self._default_headers()),
                    b"content-type: text/plain; charset=utf-8\r\n",
                    b"content-length: " + str(len(body)).encode() + b"\r\n",
                    b"connection: close\r\n\r\n",
                    body,
                ]
            )
        )
        self.transport.close()

    def _default_headers(self) -> list[tuple[bytes, bytes]]:
        return list(self.server_state.default_headers)

    def _arm_header_timer(self) -> None:
        self._disarm_header_timer()
        self._header_timer = self.loop.call_later(self.header_timeout, self._header_timed_out)

    def _disarm_header_timer(self) -> None:
        if self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None

    def _header_timed_out(self) -> None:
        self._header_timer = None
        if not self.transport.is_closing():
            self.transport.close()


# What Uvicorn's cycle writes when a request expects `100-continue` (httptools_impl, 0.55).
CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"


class HeadWithFirstBody:
    """The transport one request's response is written through (Uvicorn's
    `RequestResponseCycle.transport`): the response head, which Uvicorn writes on
    `http.response.start`, is held and written with the first body bytes, in one write, as
    Hypercorn's fast path does (app/hypercorn_http1.py). Two writes were two TCP segments for
    a small answer, each sent, delivered and read on its own: at `wrk -c32` on `GET user`,
    one write served 5-10% more answers a second (docs/performance.md).

    What else the cycle writes passes straight through: `100 Continue`, which the client
    awaits before sending its body, and the body once the head is out. A close (an answer cut
    short, or no keep-alive) writes a held head first, as Uvicorn had written it. The cycle of
    a HEAD request, whose answer has no body write, is not given one.
    """

    __slots__ = ("_head", "_transport")

    def __init__(self, transport: asyncio.Transport) -> None:
        self._transport = transport
        self._head: bytes | None = None  # None: not written yet; b"": written

    def write(self, data: bytes) -> None:
        head = self._head
        if head is None:
            if data == CONTINUE:
                self._transport.write(data)
            else:
                self._head = data
        elif head:
            self._head = b""
            self._transport.write(head + data)
        else:
            self._transport.write(data)

    def close(self) -> None:
        if self._head:
            self._transport.write(self._head)
            self._head = b""
        self._transport.close()

    def is_closing(self) -> bool:
        return self._transport.is_closing()


WEBSOCKET_CLOSE_SECONDS = 2.0  # a closed websocket's wait for the client's close frame


class ServiceWebSocketProtocol(WebSocketsSansIOProtocol):
    """Uvicorn's websockets (sans-I/O) protocol whose close frame is queued even while the
    client is not reading, and which waits at most `WEBSOCKET_CLOSE_SECONDS` for the client's
    answering close frame, then closes the TCP connection.

    Uvicorn's `send` waits for the transport to be writable before anything, the close
    included: a client that stopped reading never got its 1013 (the app gave up waiting, and
    the connection was closed without a close frame). Hypercorn queues the close frame behind
    what is buffered, and so does this. Uvicorn then waited 10 s for the client's close."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.close_timeout = WEBSOCKET_CLOSE_SECONDS

    async def send(self, message: Any) -> None:
        if (
            message["type"] == "websocket.close"
            and not self.writable.is_set()
            and self.handshake_complete
            and self.initial_response is None
            and not self.close_sent
            and not self.disconnected
        ):
            # Uvicorn 0.55's close branch of `send`, without the wait for writability.
            if not self.transport.is_closing():
                code = message.get("code", 1000)
                reason = message.get("reason", "") or ""
                self.queue.put_nowait(
                    {"type": "websocket.disconnect", "code": code, "reason": reason}
                )
                self.conn.send_close(code, reason)
                self.transport.write(b"".join(self.conn.data_to_send()))
                self.close_sent = True
                if self.read_paused:
                    self.read_paused = False
                    self.transport.resume_reading()
                self.close_timer = self.loop.call_later(self.close_timeout, self.transport.close)
            return
        await super().send(message)


class ServiceServer(Server):
    """Uvicorn's server without its signal handlers: the supervisor's worker decides when to
    stop (after the app's drain hooks), by setting `should_exit`."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


def uvicorn_config(app: Any, settings: Settings, hypercorn: Any) -> Config:
    """A Uvicorn `Config` for `app` with this service's settings: those of hypercorn.toml
    (`hypercorn`, a Hypercorn `Config`: keep-alive, graceful timeout, backlog, head size,
    websocket frame limit) and `HTTP_HEADER_TIMEOUT`, `WS_COMPRESSION`."""
    ServiceHttpToolsProtocol.header_timeout = settings.http_header_timeout
    ServiceHttpToolsProtocol.max_head_bytes = hypercorn.h11_max_incomplete_size
    return Config(
        app,
        loop="uvloop",
        http=ServiceHttpToolsProtocol,
        ws=ServiceWebSocketProtocol,
        lifespan="on",
        log_config=None,
        access_log=False,  # the app writes one line per request (app/request_log.py)
        server_header=False,
        timeout_keep_alive=int(hypercorn.keep_alive_timeout),
        timeout_graceful_shutdown=int(hypercorn.graceful_timeout),
        backlog=hypercorn.backlog,
        ws_max_size=hypercorn.websocket_max_message_size,
        ws_ping_interval=None,  # liveness is the app's heartbeat (docs/websockets.md)
        ws_per_message_deflate=settings.ws_compression,
        proxy_headers=False,  # FORWARDED_ALLOW_HOPS is the app's (app/factory.py)
    )


async def serve(
    app: Any,
    settings: Settings,
    hypercorn: Any,
    sockets: list[socket.socket],
    shutdown_trigger: Callable[[], Awaitable[None]],
) -> None:
    """Serve `app` on `sockets` (already bound) until `shutdown_trigger` returns, then shut
    down as Uvicorn does (within `graceful_timeout`)."""
    server = ServiceServer(uvicorn_config(app, settings, hypercorn))
    uvicorn_log = logging.getLogger("uvicorn")
    uvicorn_log.handlers[:] = logging.getLogger("app").handlers
    uvicorn_log.setLevel(logging.WARNING)
    uvicorn_log.propagate = False
    serving = asyncio.ensure_future(server.serve(sockets=sockets))
    stopping = asyncio.ensure_future(shutdown_trigger())
    try:
        while not server.started and not serving.done():  # noqa: ASYNC110 - Uvicorn has no event for it
            await asyncio.sleep(0.05)
        if server.started:
            for sock in sockets:
                host, port = sock.getsockname()[:2]
                # The line Hypercorn writes, which deployments and tests wait for.
                log.info("Running on http://%s:%s with Uvicorn (CTRL + C to quit)", host, port)
        await asyncio.wait({serving, stopping}, return_when=asyncio.FIRST_COMPLETED)
        server.should_exit = True
        await serving
    finally:
        stopping.cancel()
