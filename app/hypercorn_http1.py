"""Hypercorn's HTTP/1.1 protocol with ordinary requests parsed in C (httptools' llhttp) and
every other request left to h11, as Hypercorn and this service's patches handle it (issue 30).

Why: h11 and Hypercorn's protocol code around it, in pure Python, were about a fifth of a
worker's CPU on `GET /api/v1/user/<id>` (py-spy, docs/performance.md): the gap between the
service on Hypercorn and FastAPI on Uvicorn, which parses in C.

The fast path takes a request whose head (request line and headers) ends in CRLF CRLF, is
HTTP/1.0 or 1.1 (1.1 with a `Host`), has no `Transfer-Encoding`, `Upgrade` or `Expect` header
and at most one `Content-Length`, and which llhttp accepts in its strict mode. Any other
request (a chunked upload, a websocket or h2c upgrade, `100-continue`, HTTP/2's preface, a head
still incomplete past `h11_max_incomplete_size`, a request line or header llhttp refuses) is
handed to h11 with every byte not yet parsed, and h11 serves the rest of that connection:
its answers (400, 431, 501, 505) and the patches' behaviours (app/hypercorn_patches.py) stay
theirs. A hand-off happens only between requests, before the request is given to the app.

A fast-path response is written as h11 writes it: the status line `HTTP/1.1 <status> ` (no
reason phrase), the app's
headers and Hypercorn's (`date`), `transfer-encoding: chunked` when an HTTP/1.1 response has
no `content-length` (HTTP/1.0: the body ends at the close), `connection: close` when the
connection ends after it; the head goes out with the first body bytes in one write
(`write_response_head_with_body`). A header name or value that could split the head (CR, LF,
NUL) raises `h11.LocalProtocolError` in the app's send, as h11 does; so does a body longer
than its `content-length`. The connection is kept for the next request only when both the
request and the response were complete, the request was HTTP/1.1 without `Connection: close`,
and the worker is not shutting down; requests pipelined behind a request in flight wait
(nothing more is read meanwhile), and those behind the connection's last request are dropped
(RFC 9112 §9.6).

A fast-path request is given to the app by the protocol itself, as Hypercorn's `HTTPStream`
gives it (the same scope, the same task group spawn, `http.disconnect` at the end, a 500 when
the app answers nothing, Hypercorn's access log), without its event objects per step: with
the parser, the raw server layer went from 129 to 43 µs an answer (bench/server_layer.py). Its
scope offers the `app.client_gone` extension (app.client_gone): a client that leaves before
its answer is complete is told to the app directly.

`HTTP1_PARSER=h11` (app.settings) keeps Hypercorn's own protocol for every request.
"""

from __future__ import annotations

from time import time
from typing import Any, Literal
from urllib.parse import unquote

import h11
import httptools
from hypercorn.events import Closed, Event, RawData, Updated
from hypercorn.protocol.events import Request
from hypercorn.protocol.h11 import STREAM_ID, H11Protocol
from hypercorn.protocol.http_stream import ASGIHTTPState
from hypercorn.utils import UnexpectedMessageError, build_and_validate_headers, valid_server_name

from app.client_gone import ClientGone, offer

HEAD_END = b"\r\n\r\n"
# h11's status line: no reason phrase (optional, ignored by clients; RFC 9112 §4).
STATUS_LINES = {status: b"HTTP/1.1 %d \r\n" % status for status in range(100, 1000)}
# Request headers whose semantics live in h11's code path (framing, upgrades, 100-continue).
H11_HEADERS = frozenset({b"transfer-encoding", b"upgrade", b"expect"})
NO_BODY_STATUSES = frozenset({204, 304})
# Response headers whose lines h11 rewrites with the framing it chooses.
FRAMING_HEADERS = frozenset({b"content-length", b"transfer-encoding", b"connection"})
TOKEN_BYTES = frozenset(
    b"!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
)
MAX_CHECKED_NAMES = 1024
_checked_names: set[bytes] = set()  # response header names already known to be tokens


class _HandOff(Exception):
    """This request is h11's (the module docstring)."""


class HttpToolsH11Protocol(H11Protocol):
    """`hypercorn.protocol.h11.H11Protocol` with the fast path of the module docstring; its
    interface and events are Hypercorn 0.18's."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.parser: httptools.HttpRequestParser | None = httptools.HttpRequestParser(self)
        self.unparsed = bytearray()
        self.handed_off = False
        self.closing = False  # the connection ends: Closed was sent, or the client's EOF came
        # The request being read:
        self.url = b""
        self.headers: list[tuple[bytes, bytes]] = []
        self.head_parsed = False
        self.message_complete = False
        self.to_h11 = False
        self.has_host = False
        self.content_length = 0
        self.body_left = 0
        # False once a request that is the connection's last was read (RFC 9112 §9.6).
        self.request_keep_alive = True
        self.method = "GET"
        self.http_version = "1.1"
        # The exchange with the app (Hypercorn's `HTTPStream`, one at a time on HTTP/1):
        self.in_flight = False
        self.app_put: Any = None  # the app's receive queue's `put`
        self.scope: Any = {}  # an ASGI HTTP scope
        self.client_gone = ClientGone()  # the request's (app.client_gone)
        self.asgi_state = ASGIHTTPState.REQUEST
        self.response_message: Any = None
        self.started_at = 0.0
        # The response being written:
        self.held_head = b""
        self.chunked = False
        self.body_allowed = True
        self.length_left: int | None = None
        self.response_keep_alive = False
        self.response_complete = False

    # httptools' callbacks (called inside `feed_data`) ------------------------------------

    def on_message_begin(self) -> None:
        self.url = b""
        self.headers = []
        self.head_parsed = self.message_complete = self.to_h11 = self.has_host = False
        self.content_length = 0

    def on_url(self, url: bytes) -> None:
        self.url += url

    def on_header(self, name: bytes, value: bytes) -> None:
        name = name.lower()
        if name in H11_HEADERS:
            self.to_h11 = True
        elif name == b"content-length":
            self.content_length = int(value)  # llhttp allows digits only, and one of it
        elif name == b"host":
            self.has_host = True
        self.headers.append((name, value.rstrip(b" \t")))

    def on_headers_complete(self) -> None:
        self.head_parsed = True
        # llhttp's flags describe the next message once this one is complete: read them now.
        self.request_keep_alive = self.parser is not None and self.parser.should_keep_alive()

    def on_message_complete(self) -> None:
        self.message_complete = True

    # Hypercorn's protocol interface ------------------------------------------------------

    async def handle(self, event: Event) -> None:
        if self.handed_off:
            await super().handle(event)
        elif isinstance(event, RawData):
            if not self.closing:
                self.unparsed += event.data
                await self._read_requests()
        elif isinstance(event, Closed):
            self.closing = True
            await self._end_exchange(client_left=True)

    # Reading -----------------------------------------------------------------------------

    async def _read_requests(self) -> None:
        while not self.closing:
            if self.in_flight:
                if self.body_left:
                    await self._read_body()
                    if self.body_left:
                        return
                if not self.request_keep_alive:
                    self.unparsed.clear()  # nothing behind the last request is read
                    return
                if not self.unparsed or self.closing:
                    return
                # A pipelined request: read nothing more until this one's answer is written.
                await self.can_read.clear()
                await self.can_read.wait()
                continue
            if not self.unparsed or not self.request_keep_alive:
                return
            if self.unparsed[0] in (13, 10):  # CR, LF
                await self._hand_off()  # blank lines before a request line: as h11 reads them
                return
            end = self.unparsed.find(HEAD_END)
            if end < 0:
                if len(self.unparsed) > self.config.h11_max_incomplete_size or (
                    b"\n\n" in self.unparsed or b"\n\r\n" in self.unparsed
                ):
                    await self._hand_off()  # h11: 431, or bare-LF line ends
                return
            head = bytes(self.unparsed[: end + 4])
            try:
                self._parse_head(head)
            except _HandOff:
                await self._hand_off()
                return
            del self.unparsed[: end + 4]
            await self._start_exchange()

    def _parse_head(self, head: bytes) -> None:
        parser = self.parser
        assert parser is not None
        try:
            parser.feed_data(head)
        except (httptools.HttpParserError, httptools.HttpParserUpgrade) as error:
            raise _HandOff from error
        version = parser.get_http_version()
        if (
            not self.head_parsed
            or self.to_h11
            or version not in ("1.1", "1.0")
            or (version == "1.1" and not self.has_host)
            or self.message_complete != (self.content_length == 0)
        ):
            raise _HandOff
        self.method = parser.get_method().decode("ascii")
        self.http_version = version
        self.request_keep_alive = self.request_keep_alive and version == "1.1"
        self.body_left = self.content_length

    async def _start_exchange(self) -> None:
        """Give the request to the app, as Hypercorn's `HTTPStream` does (its scope, its
        spawn, its 404 for a server name not served)."""
        await self.send(Updated(idle=False))
        self.held_head = b""
        self.response_complete = False
        self.in_flight = True
        self.asgi_state = ASGIHTTPState.REQUEST
        self.started_at = time()
        path, _, query_string = self.url.partition(b"?")
        self.scope = {
            "type": "http",
            "http_version": self.http_version,
            "asgi": {"spec_version": "2.1", "version": "3.0"},
            "method": self.method,
            "scheme": "https" if self.ssl else "http",
            "path": unquote(path.decode("ascii")),
            "raw_path": path,
            "query_string": query_string,
            "root_path": self.config.root_path,
            "headers": self.headers,
            "client": self.client,
            "server": self.server,
            "state": self.connection_state.copy(),
            "extensions": {},
        }
        self.client_gone = offer(self.scope)
        self.keep_alive_requests += 1
        await self.context.mark_request()
        if self.config.server_names and not valid_server_name(self.config, self._request()):
            await self._answer_error(404)
            await self._end_exchange()
            return
        self.app_put = await self.task_group.spawn_app(
            self.app, self.config, self.scope, self._app_send
        )
        if self.message_complete:
            await self.app_put({"type": "http.request", "body": b"", "more_body": False})

    def _request(self) -> Request:
        return Request(
            stream_id=STREAM_ID,
            headers=self.headers,
            http_version=self.http_version,
            method=self.method,
            raw_path=self.url,
            state=self.connection_state,
        )

    async def _read_body(self) -> None:
        taken = bytes(self.unparsed[: self.body_left])
        if not taken:
            return
        del self.unparsed[: len(taken)]
        self.body_left -= len(taken)
        parser = self.parser
        assert parser is not None
        parser.feed_data(taken)  # keeps llhttp's state in step; the length is already known
        if self.app_put is None:
            return  # answered already (a 413 before the body, say): the body is dropped
        await self.app_put({"type": "http.request", "body": taken, "more_body": True})
        if not self.body_left and self.app_put is not None:
            await self.app_put({"type": "http.request", "body": b"", "more_body": False})

    async def _hand_off(self) -> None:
        """Give the connection, from the request not yet given to the app, to h11."""
        self.handed_off = True
        self.parser = None
        unparsed = bytes(self.unparsed)
        self.unparsed.clear()
        await super().handle(RawData(data=unparsed))

    # Writing -----------------------------------------------------------------------------

    async def _app_send(self, message: Any) -> None:
        """The app's `send` (Hypercorn's `HTTPStream.app_send` for HTTP/1.1: no trailers, push
        or early hints); None when the app has returned."""
        state = self.asgi_state
        if message is None:
            if self.in_flight:
                if state is ASGIHTTPState.REQUEST:
                    await self._answer_error(500)
                await self._end_exchange()
            return
        kind = message["type"]
        if kind == "http.response.start" and state is ASGIHTTPState.REQUEST:
            self.response_message = message
            headers = build_and_validate_headers(message.get("headers", []))
            self._start_response(int(message["status"]), headers)
            self.asgi_state = ASGIHTTPState.RESPONSE
        elif kind == "http.response.body" and state is ASGIHTTPState.RESPONSE:
            body = message.get("body", b"")
            if body and self.body_allowed:
                await self._write_body(bytes(body))
            if not message.get("more_body", False):
                await self._end_body()
                self.asgi_state = ASGIHTTPState.CLOSED
                elapsed = time() - self.started_at
                await self.config.log.access(self.scope, self.response_message, elapsed)
                await self._end_exchange()
        else:
            raise UnexpectedMessageError(state, kind)

    async def _answer_error(self, status: int) -> None:
        """Hypercorn's answer when the app gave none (500) or the server name is not served."""
        self._start_response(status, [(b"content-length", b"0"), (b"connection", b"close")])
        await self._end_body()
        self.asgi_state = ASGIHTTPState.CLOSED
        elapsed = time() - self.started_at
        await self.config.log.access(self.scope, {"status": status, "headers": []}, elapsed)

    def _start_response(self, status: int, headers: list[tuple[bytes, bytes]]) -> None:
        """The response's head, held for its first body bytes; h11's framing and connection
        headers (`h11._connection.Connection._clean_up_response_headers_for_sending`)."""
        if not 200 <= status < 1000:
            raise h11.LocalProtocolError(f"status {status} outside a websocket's handshake")
        lines = [STATUS_LINES[status]]
        length: int | None = None
        length_line = encoding_line = b""
        tokens: set[bytes] = set()  # of the app's `connection` headers
        connection_lines: list[bytes] = []
        append = lines.append
        for name, value in (*headers, *self.config.response_headers("h11")):
            if name not in _checked_names:
                _check_name(name)
            line = b"%b: %b\r\n" % (name, value)
            if name not in FRAMING_HEADERS:
                append(line)
            elif name == b"content-length":
                if not value.isdigit():
                    raise h11.LocalProtocolError(f"content-length {value!r} is not a length")
                length, length_line = int(value), line
            elif name == b"transfer-encoding":
                if value.strip().lower() != b"chunked":
                    raise h11.LocalProtocolError("only chunked transfer-encoding is supported")
                encoding_line = line
            else:  # connection
                tokens.update(token.strip() for token in value.lower().split(b","))
                connection_lines.append(line)
        chunked = delimited_by_close = False
        if status in NO_BODY_STATUSES:  # framed by their status: the headers as given
            lines += (line for line in (length_line, encoding_line) if line)
        elif encoding_line or length is None:  # chunked, or an HTTP/1.0 body ended by close
            length = None
            if self.http_version == "1.1":
                chunked = True
                lines.append(b"Transfer-Encoding: chunked\r\n")
            elif self.method != "HEAD":
                delimited_by_close = True
        else:
            lines.append(length_line)
        if self.keep_alive_requests >= self.config.keep_alive_max_requests:
            tokens.add(b"close")  # Hypercorn's own header for the connection's last answer
            connection_lines.append(b"connection: close\r\n")
        keep_alive = self.request_keep_alive and b"close" not in tokens and not delimited_by_close
        # h11 rewrites the connection headers only when the request or the framing ends the
        # connection; an app's own `close` is written as given.
        if self.request_keep_alive and not delimited_by_close:
            lines += connection_lines
        else:
            tokens.discard(b"keep-alive")
            tokens.discard(b"")
            tokens.add(b"close")
            lines += (b"Connection: %b\r\n" % token for token in sorted(tokens))
        lines.append(b"\r\n")
        head = b"".join(lines)
        # Each element of `lines` is one line with its CRLF: a value holding CR, LF or NUL
        # could otherwise split the head (h11 refuses such values too).
        line_ends = len(lines)
        if (
            b"\x00" in head
            or head.count(b"\r\n") != line_ends
            or head.count(b"\r") != line_ends
            or head.count(b"\n") != line_ends
        ):
            raise h11.LocalProtocolError("a response header holds CR, LF or NUL")
        self.held_head = head
        self.chunked = chunked and self.method != "HEAD"
        self.body_allowed = status not in NO_BODY_STATUSES and self.method != "HEAD"
        self.length_left = length if self.body_allowed else None
        self.response_keep_alive = keep_alive

    async def _write_body(self, data: bytes) -> None:
        if not self.body_allowed or not data:
            return
        if self.length_left is not None:
            self.length_left -= len(data)
            if self.length_left < 0:
                self.response_keep_alive = False
                raise h11.LocalProtocolError("Too much data for declared Content-Length")
        if self.chunked:
            data = b"%x\r\n%b\r\n" % (len(data), data)
        await self._write(data)

    async def _end_body(self) -> None:
        if self.length_left:
            self.response_keep_alive = False
            await self._write(b"")
            raise h11.LocalProtocolError("Too little data for declared Content-Length")
        self.response_complete = True
        await self._write(b"0\r\n\r\n" if self.chunked and self.body_allowed else b"")

    async def _write(self, data: bytes) -> None:
        if self.held_head:
            data = self.held_head + data
            self.held_head = b""
        if data and not self.closing:
            await self.send(RawData(data=data))

    async def _end_exchange(self, *, client_left: bool = False) -> None:
        """The request's end (Hypercorn's `StreamClosed`): the app is told the client is gone
        (`http.disconnect`), and the connection waits for the next request or is closed."""
        if not self.in_flight:
            return
        self.in_flight = False
        await self._write(b"")  # a head the app started and abandoned still goes out
        if self.asgi_state is not ASGIHTTPState.CLOSED:
            unanswered: Any = None  # Hypercorn logs an unanswered request so
            await self.config.log.access(self.scope, unanswered, time() - self.started_at)
        app_put, self.app_put = self.app_put, None
        if app_put is not None:
            await app_put({"type": "http.disconnect"})
        if client_left:
            self.client_gone.notify()  # the app stops its work for it (app.client_gone)
            return  # the server closes the connection itself
        if (
            self.response_complete
            and self.response_keep_alive
            and self.message_complete
            and not self.body_left
            and not self.closing
            and not self.context.terminated.is_set()
        ):
            await self.send(Updated(idle=True))
            await self.can_read.set()
        else:
            self.closing = True
            await self.can_read.set()
            await self.send(Closed())


def _check_name(name: bytes) -> None:
    """A response header name must be a token (RFC 9110 §5.1), as h11 requires."""
    if not name or not TOKEN_BYTES.issuperset(name):
        raise h11.LocalProtocolError(f"the response header name {name!r} is not a token")
    if len(_checked_names) < MAX_CHECKED_NAMES:
        _checked_names.add(name)


def use_http1_parser(parser: Literal["httptools", "h11"]) -> None:
    """Serve HTTP/1 connections with `HttpToolsH11Protocol` ("httptools") or Hypercorn's own
    `H11Protocol` ("h11", `HTTP1_PARSER=h11`): Hypercorn's `ProtocolWrapper` makes each
    connection's protocol from `hypercorn.protocol.H11Protocol`."""
    import hypercorn.protocol

    protocol = HttpToolsH11Protocol if parser == "httptools" else H11Protocol
    hypercorn.protocol.H11Protocol = protocol  # type: ignore[attr-defined]
