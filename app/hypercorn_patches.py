"""Every change this service makes to Hypercorn, wsproto and h11, in one place, each applied
only on the versions it was written for (app/overrides.py; docs/design.md, "Server patches", says
what each fixes upstream and what would let it go).

- `limit_websocket_compression` / `set_websocket_compression`: permessage-deflate without
  context takeover, or declined (`WS_COMPRESSION`);
- `close_refused_frames`: a frame wsproto refuses is answered with its close code, not dropped;
- `bound_connection_close`: a closing connection whose peer stopped reading is aborted;
- `lingering_close`: a connection is closed after its answer as nginx's `lingering_close`
  does (write side first, the client's input drained for a bounded time), so no reset eats
  the answer;
- `bound_websocket_close`: a frame over the limit gets 1009 whatever its size, and a close
  frame the client does not answer ends the connection after 2 s;
- `refuse_transfer_codings_with_400`: a `Transfer-Encoding` other than chunked is a 400;
- `write_response_head_with_body`: an HTTP/1.1 response's head goes out with its first body
  bytes, in one write;
- `idle_timer`: a keep-alive connection's idle wait is a timer, not two tasks per request, and
  a request's headers have a timeout of their own (`HTTP_HEADER_TIMEOUT`);
- `response_headers_once_a_second`: the `date` header is formatted once a second, not per
  response;
- `refuse_oversized_bodies_early`: no 100 Continue for a body over the limit, and a chunk size
  over 16 hex digits (400) or over the limit (413) is refused when it arrives;
- `strict_request_line`: a lower-case method is a 501, a version other than 1.0/1.1 a 505;
- `end_refused_handshakes`: the app learns (1002) when Hypercorn refuses a websocket whose
  client sent data before the 101, and a refused handshake's connection is closed;
- `ignore_data_after_the_last_request`: requests pipelined behind a connection's last one
  (HTTP/1.0, `Connection: close`) do not turn its answer into a 400;
- `websocket_wire`: the TCP transport under a websocket, so a broadcast frame encoded once is
  written to every receiver (app/realtime/connection.py).

`patch_hypercorn()` checks the versions first; on any other version it raises
`UnsupportedServerVersion`: `python -m app serve` prints its one line and exits (it checks
before it starts a worker), and a plain `hypercorn app.asgi:app` or `hypercorn
"app:create_app()"` serves unpatched with a warning (app.served).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import weakref
from collections.abc import Generator
from functools import partial
from typing import Any

from wsproto.extensions import PerMessageDeflate

from app.overrides import unsupported

# The packages these patches change; the releases each supports are app/overrides.py's (and
# pyproject.toml's bounds), shown on by tests/test_hypercorn_patches.py.
PATCHED_PACKAGES = ("hypercorn", "wsproto", "h11")


class UnsupportedServerVersion(RuntimeError):
    """An installed Hypercorn, wsproto or h11 this module was not written for."""


def check_versions() -> None:
    """Raises `UnsupportedServerVersion` naming the first package whose installed version the
    patches do not support (app.overrides)."""
    problems = unsupported(PATCHED_PACKAGES)
    if problems:
        raise UnsupportedServerVersion(
            f"{problems[0]}: install a supported version or check the patches against this one"
        )


def limit_websocket_compression() -> None:
    """Negotiate permessage-deflate without context takeover (RFC 7692 §7.1.1).

    Hypercorn accepts permessage-deflate with context takeover, which keeps a zlib compressor and
    decompressor (about 100 KiB resident, measured by bench/idle_connections.py) alive for each
    connection's whole life. Without context takeover they exist only while a message is being
    compressed: frames of this service are small JSON, so the compression lost is small.
    """
    from hypercorn.protocol import ws_stream

    ws_stream.PerMessageDeflate = partial(  # type: ignore[attr-defined, assignment]
        PerMessageDeflate, server_no_context_takeover=True, client_no_context_takeover=True
    )


class DeclinedPerMessageDeflate(PerMessageDeflate):
    """permessage-deflate, declined when a client offers it (WS_COMPRESSION=false)."""

    def accept(self, offer: str) -> None:
        return None


def set_websocket_compression(enabled: bool) -> None:
    """`WS_COMPRESSION`: negotiate permessage-deflate (without context takeover, see
    `limit_websocket_compression`) or decline it. Off by default: for this service's small
    JSON frames it costs CPU and saves no bytes (bench/: a 1,000-receiver fan-out cost 29%
    more server CPU per delivery with browsers' default offer accepted)."""
    from hypercorn.protocol import ws_stream

    if enabled:
        limit_websocket_compression()
    else:
        ws_stream.PerMessageDeflate = DeclinedPerMessageDeflate  # type: ignore[attr-defined]


def close_refused_frames() -> None:
    """Answer a frame wsproto refuses with a close frame carrying its code (RFC 6455 §7.4.1:
    1007 for a text frame that is not UTF-8, 1002 for a protocol error).

    wsproto reports such a frame as a `CloseConnection` event while the connection is still
    OPEN; Hypercorn replies to a `CloseConnection` only in the REMOTE_CLOSING state, so it
    dropped the TCP connection without a close frame (the client saw 1006). Marking the state
    REMOTE_CLOSING, as a close frame from the client would, makes Hypercorn send the reply.
    """
    from wsproto.connection import Connection, ConnectionState
    from wsproto.events import CloseConnection, Event

    if getattr(Connection.events, "closes_refused_frames", False):
        return
    original_events = Connection.events

    def events(self: Connection) -> Generator[Event, None, None]:
        for event in original_events(self):
            if isinstance(event, CloseConnection) and self._state is ConnectionState.OPEN:
                self._state = ConnectionState.REMOTE_CLOSING
            yield event

    events.closes_refused_frames = True  # type: ignore[attr-defined]
    Connection.events = events  # type: ignore[method-assign]


CONNECTION_CLOSE_SECONDS = 60.0  # how long a closing connection may take to flush
SHUTDOWN_CLOSE_SECONDS = 1.0  # the same, once the worker is shutting down


def bound_connection_close() -> None:
    """Give a closing TCP connection at most `CONNECTION_CLOSE_SECONDS` to flush what is left
    to send (`SHUTDOWN_CLOSE_SECONDS` once the worker shuts down), then abort it.

    Hypercorn closes a connection with `writer.close()` and waits for `wait_closed()`, which
    lasts until the peer has read everything still buffered: a client that stopped reading
    (a stalled websocket reader) kept that task, and so every graceful shutdown, waiting until
    `graceful_timeout` ran out. A slow reader still gets its last frames (its 1013 close
    included) as long as it reads within the bound.
    """
    from hypercorn.asyncio.tcp_server import TCPServer

    if getattr(TCPServer._close, "bounded", False):
        return
    original_close = TCPServer._close

    async def close(self: TCPServer) -> None:
        closing = asyncio.ensure_future(original_close(self))
        shutting_down = asyncio.ensure_future(self.context.terminated.wait())
        try:
            await asyncio.wait(
                {closing, shutting_down},
                timeout=CONNECTION_CLOSE_SECONDS,
                return_when=asyncio.FIRST_COMPLETED,
            )
            if not closing.done() and shutting_down.done():
                await asyncio.wait({closing}, timeout=SHUTDOWN_CLOSE_SECONDS)
        finally:
            shutting_down.cancel()
        if not closing.done():
            self.writer.transport.abort()  # the peer never read: drop what is left
            await asyncio.wait({closing}, timeout=SHUTDOWN_CLOSE_SECONDS)

    close.bounded = True  # type: ignore[attr-defined]
    close.__wrapped__ = original_close  # type: ignore[attr-defined]
    TCPServer._close = close  # type: ignore[method-assign]


LINGER_SECONDS = 2.0  # a closing connection's input is read and dropped this long at most


def lingering_close() -> None:
    """Close a connection the way nginx's `lingering_close` does: first shut the write side
    (the answer, then FIN), then read and drop what the client still sends until it closes
    too, for at most `LINGER_SECONDS`, and only then close the socket.

    Hypercorn closed the socket right after its answer (a 413 or 408 from app.admission, a
    websocket's 1008 or 1009) while the client was still sending: the kernel answers unread
    input with a reset, and a client could lose the answer (curl lost a 413 in 4 to 10 of 50
    tries). Not while the worker shuts down, nor after the client closed, nor for TLS (no
    half-close); an idle keep-alive connection is closed by its timer as before. Needs
    `idle_timer`'s read loop (which drops a lingering connection's input) and wraps
    `bound_connection_close`'s bound.
    """
    from hypercorn.asyncio.tcp_server import TCPServer

    if getattr(TCPServer._close, "lingers", False):
        return
    bounded_close = TCPServer._close

    async def close(self: Any) -> None:
        if (
            not getattr(self, "lingering", False)
            and not self.reader.at_eof()
            and not self.context.terminated.is_set()
            and not self.writer.transport.is_closing()
            and self.writer.get_extra_info("ssl_object") is None
        ):
            self.lingering = True
            try:
                self.writer.write_eof()
            except (NotImplementedError, OSError, RuntimeError):
                pass
            else:
                # The read loop drops what arrives until the client's EOF; this bounds it.
                self.linger_timer = asyncio.get_running_loop().call_later(
                    LINGER_SECONDS, self.writer.transport.close
                )
                await self.idle_task.stop()
                return  # Hypercorn's connection task closes it when the read loop ends
        timer = getattr(self, "linger_timer", None)
        if timer is not None:
            timer.cancel()
        await bounded_close(self)

    close.lingers = True  # type: ignore[attr-defined]
    close.bounded = True  # type: ignore[attr-defined]
    close.__wrapped__ = bounded_close  # type: ignore[attr-defined]
    TCPServer._close = close  # type: ignore[method-assign]


WEBSOCKET_CLOSE_SECONDS = 2.0  # a server's close frame waits this long for the client's
# A client's close or refused frame right behind a message waits this long for the app's
# answer to that message (an echo), which then goes out before the close.
ANSWER_WAIT_SECONDS = 0.1


def bound_websocket_close() -> None:
    """Websocket closes that end in time and say what happened.

    - After refusing a frame over `websocket_max_message_size` (1009), Hypercorn stopped
      reading the events already parsed (`break`): a client's close frame that came in the
      same read as the rest of the big frame was never seen, and the connection stayed open
      until the app's idle timeout (a frame over about 1 MB, read in several reads, got no
      close at all). Here the rest of that message is dropped, the reading goes on, and the
      app is told at once, with 1009 (its log line names it).
    - After any close frame the server sends (the app's 1008, 1013, ...; the 1009 above), the
      client has `WEBSOCKET_CLOSE_SECONDS` to answer; then the TCP connection is closed
      (lingering: `lingering_close`). Hypercorn waited for the client's answer forever.
    - A client's close, or a frame refused with 1002/1007, right behind a message: the app
      gets `ANSWER_WAIT_SECONDS` after that message to answer it (its echo) before the close
      goes out and the app is told of the disconnect. Hypercorn closed at once, and an echo
      written a loop turn later was dropped (Autobahn|Testsuite 3.4 and 4.1.5: a message, then
      a frame with a reserved bit or opcode; their expected outcome holds the echo).
    """
    from hypercorn.protocol import ws_stream
    from hypercorn.protocol.events import StreamClosed
    from wsproto.connection import ConnectionState
    from wsproto.events import CloseConnection, Message, Ping
    from wsproto.frame_protocol import CloseReason

    if getattr(ws_stream.WSStream._handle_events, "reads_on", False):
        return
    original_send = ws_stream.WSStream._send_wsproto_event
    pending: set[asyncio.Task[None]] = set()

    async def handle_events(self: Any) -> None:
        # Hypercorn 0.18's `WSStream._handle_events`, reading on after a frame too large.
        for event in self.connection.events():
            if isinstance(event, Message):
                if getattr(self, "refused_too_large", False):
                    continue  # the rest of the refused message
                try:
                    self.buffer.extend(event)
                except ws_stream.FrameTooLargeError:
                    self.refused_too_large = True
                    self.buffer.clear()
                    await self._send_wsproto_event(
                        CloseConnection(code=CloseReason.MESSAGE_TOO_BIG)
                    )
                    await self.app_put(
                        {"type": "websocket.disconnect", "code": CloseReason.MESSAGE_TOO_BIG}
                    )
                    continue
                if event.message_finished:
                    await self.app_put(self.buffer.to_message())
                    self.buffer.clear()
                    self.asked_at = time.monotonic()
            elif isinstance(event, Ping):
                await self._send_wsproto_event(event.response())
            elif isinstance(event, CloseConnection):
                await _let_the_app_answer(self)
                if self.connection.state == ConnectionState.REMOTE_CLOSING:
                    await self._send_wsproto_event(event.response())
                await self.send(StreamClosed(stream_id=self.stream_id))

    async def _let_the_app_answer(stream: Any) -> None:
        # A close (or a refused frame) right behind a message: the app's answer to that message
        # goes out first, if it comes within ANSWER_WAIT_SECONDS of the message.
        asked_at = getattr(stream, "asked_at", None)
        if asked_at is None or getattr(stream, "answered_at", 0.0) >= asked_at:
            return
        left = asked_at + ANSWER_WAIT_SECONDS - time.monotonic()
        if left <= 0:
            return
        stream.answered = asyncio.Event()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stream.answered.wait(), left)

    async def send_wsproto_event(self: Any, event: Any) -> None:
        await original_send(self, event)
        if isinstance(event, Message):
            _answered(self)
        if (
            isinstance(event, CloseConnection)
            and self.connection.state == ConnectionState.LOCAL_CLOSING
            and getattr(self, "close_timer", None) is None
        ):
            self.close_timer = asyncio.get_running_loop().call_later(
                WEBSOCKET_CLOSE_SECONDS, _close_unanswered, self
            )

    def _close_unanswered(stream: Any) -> None:
        if stream.closed:
            return
        task = asyncio.ensure_future(stream.send(StreamClosed(stream_id=stream.stream_id)))
        pending.add(task)
        task.add_done_callback(pending.discard)

    handle_events.reads_on = True  # type: ignore[attr-defined]
    ws_stream.WSStream._handle_events = handle_events  # type: ignore[method-assign]
    ws_stream.WSStream._send_wsproto_event = send_wsproto_event  # type: ignore[method-assign]


def _answered(stream: Any) -> None:
    """A data frame went out on `stream` (through wsproto or `WebsocketWire`): the app answered
    (`bound_websocket_close` waits for that before a close right behind a message)."""
    stream.answered_at = time.monotonic()
    waiting = stream.__dict__.get("answered")
    if waiting is not None:
        waiting.set()


def refuse_transfer_codings_with_400() -> None:
    """Answer a request whose `Transfer-Encoding` is anything but `chunked` with 400 (and the
    connection closed), not 501.

    h11 implements only `chunked` and hints 501 for every other coding. RFC 9112 §6.3: when
    the final coding is not chunked, the body's length cannot be known and the server MUST
    answer 400 and close; a proxy and this server could then disagree on where the request
    ends (request smuggling). This service implements no other coding, so every other one is
    answered alike. h11 hints 501 for nothing else.
    """
    from hypercorn.protocol.h11 import H11Protocol

    if getattr(H11Protocol._send_error_response, "refuses_codings_with_400", False):
        return
    original = H11Protocol._send_error_response

    async def send_error_response(self: H11Protocol, status_code: int) -> None:
        await original(self, 400 if status_code == 501 else status_code)

    send_error_response.refuses_codings_with_400 = True  # type: ignore[attr-defined]
    send_error_response.__wrapped__ = original  # type: ignore[attr-defined]
    H11Protocol._send_error_response = send_error_response  # type: ignore[method-assign]


def write_response_head_with_body() -> None:
    """Write an HTTP/1.1 response's head together with its first body bytes (or its end): one
    `send()` and one TCP segment per small response, not two.

    Hypercorn writes the status line and headers as soon as the app starts its response, and
    the body with its next message; with TCP_NODELAY (asyncio's default) each is a system call
    and a packet. The head is held until the next bytes of the same response go out, or the
    stream closes (an app that started a response and failed still gets its head written).
    A streaming response's head waits for its first chunk. Informational responses (100, 101)
    are written at once.
    """
    import h11
    from hypercorn.events import RawData
    from hypercorn.protocol.events import StreamClosed
    from hypercorn.protocol.h11 import H11Protocol

    if getattr(H11Protocol._send_h11_event, "holds_heads", False):
        return
    original_stream_send = H11Protocol.stream_send

    async def send_h11_event(self: Any, event: Any) -> None:
        try:
            data = self.connection.send(event)
        except h11.LocalProtocolError:
            if self.connection.their_state != h11.ERROR:
                raise
            return
        if type(event) is h11.Response:
            self.held_head = data
            return
        held: bytes = getattr(self, "held_head", b"")
        if held:
            self.held_head = b""
            data = held + data
        if data:
            await self.send(RawData(data=data))

    async def stream_send(self: Any, event: Any) -> None:
        held: bytes = getattr(self, "held_head", b"")
        if held and type(event) is StreamClosed:
            self.held_head = b""
            await self.send(RawData(data=held))
        await original_stream_send(self, event)

    send_h11_event.holds_heads = True  # type: ignore[attr-defined]
    H11Protocol._send_h11_event = send_h11_event  # type: ignore[method-assign]
    H11Protocol.stream_send = stream_send  # type: ignore[method-assign]


def response_headers_once_a_second() -> None:
    """Work a response's server headers (`date`, and `server` or `alt-svc` where configured)
    out once a second per protocol, not for every response.

    Hypercorn's `Config.response_headers` formats the date (`wsgiref`'s `format_date_time`) for
    each response: about 1% of a `GET user`'s CPU (py-spy). The `date` header has a resolution
    of one second (RFC 9110 §5.6.7), so the list is kept for the second it was made in, and each
    caller gets a copy of its own (callers extend it).
    """
    import time

    from hypercorn.config import Config

    if getattr(Config.response_headers, "once_a_second", False):
        return
    original = Config.response_headers
    # (config, protocol) -> (the second they were made in, the headers)
    made: dict[tuple[int, str], tuple[int, list[tuple[bytes, bytes]]]] = {}

    def response_headers(self: Config, protocol: str) -> list[tuple[bytes, bytes]]:
        key = (id(self), protocol)
        second = int(time.time())
        entry = made.get(key)
        if entry is None or entry[0] != second:
            entry = made[key] = (second, original(self, protocol))
        return list(entry[1])

    response_headers.once_a_second = True  # type: ignore[attr-defined]
    response_headers.__wrapped__ = original  # type: ignore[attr-defined]
    Config.response_headers = response_headers  # type: ignore[method-assign]


MAX_CHUNK_SIZE_DIGITS = 16  # a chunk size over 64 bits is no size (llhttp refuses it too)
_max_body_bytes = 1024 * 1024  # `set_body_limit` (MAX_CONTENT_LENGTH)


def set_body_limit(max_bytes: int) -> None:
    """`MAX_CONTENT_LENGTH`: the largest request body, for `refuse_oversized_bodies_early`."""
    global _max_body_bytes
    _max_body_bytes = max_bytes


def refuse_oversized_bodies_early() -> None:
    """Refuse what the body limit will refuse anyway, before the client sends it.

    - A chunk size of more than 16 hex digits is a 400 (h11 reads up to 20 and waited for a
      body of 2**72 bytes, answered 408 after HTTP_BODY_TIMEOUT); a chunk larger than
      `MAX_CONTENT_LENGTH` is a 413 at once, when its size line arrives.
    - `Expect: 100-continue` with a `Content-Length` over the limit gets no `100 Continue`:
      Hypercorn sends it as soon as the head is parsed, so the client started sending what was
      then refused; app.admission answers 413 before reading (RFC 9110 §10.1.1 lets a server
      answer with a final status instead). Uvicorn sends 100 only when the app first reads.
    """
    import re

    import h11
    from h11 import _readers
    from hypercorn.protocol.h11 import H11Protocol

    if getattr(_readers.ChunkedReader.__call__, "bounded", False):
        return
    _readers.chunk_header_re = re.compile(
        _readers.chunk_header_re.pattern.replace(b"{1,20}", b"{1,%d}" % MAX_CHUNK_SIZE_DIGITS)
    )
    original_call = _readers.ChunkedReader.__call__

    def read_chunk(self: Any, buf: Any) -> Any:
        event = original_call(self, buf)
        if self._bytes_in_chunk > _max_body_bytes:
            raise h11.RemoteProtocolError(
                f"a chunk larger than {_max_body_bytes} bytes", error_status_hint=413
            )
        return event

    read_chunk.bounded = True  # type: ignore[attr-defined]
    _readers.ChunkedReader.__call__ = read_chunk  # type: ignore[method-assign]

    original_send = H11Protocol._send_h11_event

    async def send_h11_event(self: Any, event: Any) -> None:
        if (
            type(event) is h11.InformationalResponse
            and event.status_code == 100
            and _declared_length(self.stream) > _max_body_bytes
        ):
            return  # the app answers 413 instead
        await original_send(self, event)

    H11Protocol._send_h11_event = send_h11_event  # type: ignore[method-assign]


def _declared_length(stream: Any) -> int:
    for name, value in getattr(stream, "scope", {}).get("headers", ()):
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return 0
    return 0


def end_refused_handshakes() -> None:
    """End a websocket handshake Hypercorn refuses: tell the app, and close the connection.

    - RFC 6455 §4.1 has a client wait for the handshake's answer; Hypercorn answers one that
      does not with 400, but the app, already started (and possibly accepting meanwhile: its
      accept is then ignored), was never told: its connection stayed registered until its idle
      timeout (60 s), a phantom any client could make by the thousand. Patched, the app gets
      `websocket.disconnect` with 1002 (protocol error) at once.
    - After that 400, and after the 400 or 404 for a handshake that is invalid (no
      `Sec-WebSocket-Key`, say) or for another server name, Hypercorn never ended the stream:
      the connection, its idle timer stopped when the request came, stayed open until the
      client closed it. Patched, the stream ends and the connection closes after the answer.
    """
    from hypercorn.protocol.events import Body, Data, Request, StreamClosed
    from hypercorn.protocol.ws_stream import WSStream

    if getattr(WSStream.handle, "ends_refused_handshakes", False):
        return
    original = WSStream.handle

    async def handle(self: Any, event: Any) -> None:
        was_open = not self.closed
        early = (
            was_open
            and isinstance(event, (Body, Data))
            and not getattr(getattr(self, "handshake", None), "accepted", True)
        )
        await original(self, event)
        if early and self.closed and self.app_put is not None:
            await self.app_put({"type": "websocket.disconnect", "code": 1002})
            self.app_put = None  # told: the stream's end below says nothing more
        if self.closed and (early or (was_open and isinstance(event, Request))):
            await self.send(StreamClosed(stream_id=self.stream_id))  # a refusal: the end

    handle.ends_refused_handshakes = True  # type: ignore[attr-defined]
    WSStream.handle = handle  # type: ignore[method-assign]


def ignore_data_after_the_last_request() -> None:
    """Answer the last request a connection may carry (HTTP/1.0 without keep-alive, or
    `Connection: close`) even when the client pipelined more requests behind it.

    h11 reads those bytes as an error ("Got data when expecting EOF") while the answer is still
    being written, and Hypercorn then sends a 400 in its place: the client loses the answer to
    a request it sent correctly. RFC 9112 §9.6: a server that sees `close` does not process
    later requests; it answers this one and closes. Until the answer is sent, the reader waits
    (PAUSED, so nothing more is buffered); after it, nothing more is read from h11.
    """
    import h11
    from hypercorn.protocol.h11 import H11Protocol

    if getattr(H11Protocol.__init__, "ignores_data_after_the_last_request", False):
        return
    original = H11Protocol.__init__

    def init(self: Any, *args: Any, **kwargs: Any) -> None:
        original(self, *args, **kwargs)
        self.connection.__class__ = LastRequestAwareConnection

    class LastRequestAwareConnection(h11.Connection):
        def next_event(self) -> Any:
            if self.their_state is h11.MUST_CLOSE:
                return h11.PAUSED if self.our_state is h11.SEND_RESPONSE else h11.NEED_DATA
            return super().next_event()

    init.ignores_data_after_the_last_request = True  # type: ignore[attr-defined]
    H11Protocol.__init__ = init  # type: ignore[method-assign]


def strict_request_line() -> None:
    """Answer a request line that HTTP/1.1 refuses (RFC 9112 §3): a method in lower case
    (methods are case-sensitive, RFC 9110 §9.1; Hypercorn upper-cased `get` and served it as
    GET) gets 501, and a version other than 1.0 or 1.1 (`HTTP/2.0` in an HTTP/1 request line)
    gets 505; the connection is closed (upstream h11 left it open, its idle timer stopped)."""
    from hypercorn.events import Closed
    from hypercorn.protocol.h11 import H11Protocol

    if getattr(H11Protocol._create_stream, "strict", False):
        return
    original = H11Protocol._create_stream

    async def create_stream(self: Any, request: Any) -> None:
        if request.http_version not in (b"1.0", b"1.1"):
            await self._send_error_response(505)
            await self.send(Closed())
            return
        if request.method != request.method.upper():
            # the 501 itself, not the one refuse_transfer_codings_with_400 turns into a 400
            send_error = H11Protocol._send_error_response
            await getattr(send_error, "__wrapped__", send_error)(self, 501)
            await self.send(Closed())
            return
        await original(self, request)

    create_stream.strict = True  # type: ignore[attr-defined]
    H11Protocol._create_stream = create_stream  # type: ignore[method-assign]


HEADER_TIMEOUT_SECONDS = 5.0  # `set_header_timeout` (HTTP_HEADER_TIMEOUT)
_header_timeout = HEADER_TIMEOUT_SECONDS


def set_header_timeout(seconds: float) -> None:
    """`HTTP_HEADER_TIMEOUT`: seconds a request's line and headers may take to arrive, from a
    new connection's start or from the first byte of a keep-alive connection's next request."""
    global _header_timeout
    _header_timeout = seconds


class IdleTimer:
    """A connection's wait for a request (Hypercorn's `AsyncioSingleTask` interface, as the
    `TCPServer.idle_task` it replaces), with two bounds where Hypercorn has one:

    - a request head (line and headers) must arrive within `HTTP_HEADER_TIMEOUT`, counted from
      a new connection's start, or from the first byte of a keep-alive connection's next
      request (nginx's `client_header_timeout`; Go's `ReadHeaderTimeout`): slowloris sockets are
      closed after it;
    - a keep-alive connection that sends nothing is kept for Hypercorn's `keep_alive_timeout`:
      longer than the idle timeouts of the proxies in front (nginx's upstream keep-alive and
      AWS ALB's, 60 s), so the proxy, not the service, closes an idle connection, and never
      one it is about to reuse (hypercorn.toml).

    Armed when the connection turns idle, disarmed when a request arrives; on expiry, or at
    once when the worker shuts down, the connection is closed as Hypercorn's `_idle_timeout`
    closes it. A deadline, not a task: Hypercorn made and cancelled two tasks per request. The
    loop's timer is not made and cancelled per request either: arming moves the deadline, and a
    timer that fires before it (or after a disarm) is re-set for what is left (or dropped);
    the timer holds the connection by a weak reference, so a closed one is not kept.
    """

    def __init__(self, server: Any) -> None:
        self.server = server
        self._armed = _idle_timers_of(server.context)  # its worker's armed timers
        self._deadline: float | None = None  # loop time; None: disarmed
        self._timer: asyncio.TimerHandle | None = None  # the loop's
        self._closing: asyncio.Task[None] | None = None
        self._served = False  # a request came: idle is then a keep-alive wait
        self._head_begun = False  # the armed bound is the header timeout

    async def restart(self, _task_group: Any, _action: Any) -> None:
        self._disarm()
        if self.server.context.terminated.is_set():
            self.expire()
            return
        self._head_begun = not self._served
        self._arm(_header_timeout if self._head_begun else self.server.config.keep_alive_timeout)

    async def stop(self) -> None:
        self._disarm()
        self._served = True

    def bytes_handled(self) -> None:
        """Received bytes were parsed: if the connection is still waiting for a request, they
        began one whose head is not complete, which now has the header timeout."""
        if self._deadline is None or self._head_begun:
            return
        from hypercorn.protocol.h11 import H11Protocol

        if isinstance(self.server.protocol.protocol, H11Protocol):  # not HTTP/2's pings
            self._head_begun = True
            self._arm(_header_timeout)

    def expire(self) -> None:
        self._disarm()
        if self._closing is None:
            self._closing = asyncio.get_running_loop().create_task(
                self.server._initiate_server_close()
            )

    def _arm(self, seconds: float) -> None:
        loop = self.server.loop
        self._deadline = deadline = loop.time() + seconds
        if self._timer is None or self._timer.when() > deadline:
            self._set_timer(loop, deadline)
        self._armed.add(self)

    def _disarm(self) -> None:
        if self._deadline is not None:
            self._deadline = None
            self._armed.discard(self)

    def _set_timer(self, loop: asyncio.AbstractEventLoop, at: float) -> None:
        if self._timer is not None:
            self._timer.cancel()
        self._timer = loop.call_at(at, _idle_timer_due, weakref.ref(self))

    def _due(self) -> None:
        self._timer = None
        deadline = self._deadline
        if deadline is None:
            return
        loop = self.server.loop
        if loop.time() < deadline:
            self._set_timer(loop, deadline)  # moved on since this timer was set
        else:
            self.expire()


def _idle_timer_due(timer: weakref.ref[IdleTimer]) -> None:
    idle_timer = timer()
    if idle_timer is not None:
        idle_timer._due()


async def _read_data(self: Any) -> None:
    # Hypercorn 0.18's `TCPServer._read_data`, telling the idle timer when bytes were handled.
    from ssl import SSLError

    from hypercorn.asyncio.tcp_server import MAX_RECV
    from hypercorn.events import Closed, RawData

    while not self.reader.at_eof():
        try:
            if self.config.read_timeout is None:  # Hypercorn's default: no task per read
                data = await self.reader.read(MAX_RECV)
            else:
                data = await asyncio.wait_for(self.reader.read(MAX_RECV), self.config.read_timeout)
        except (ConnectionError, OSError, TimeoutError, SSLError):
            break
        else:
            if getattr(self, "lingering", False):
                continue  # a closing connection's input is dropped (`lingering_close`)
            await self.protocol.handle(RawData(data))
            self.idle_task.bytes_handled()
    await self.protocol.handle(Closed())


_IDLE_TIMERS: weakref.WeakKeyDictionary[Any, set[IdleTimer]] = weakref.WeakKeyDictionary()
_SHUTDOWN_WATCHES: set[asyncio.Task[None]] = set()


def _idle_timers_of(context: Any) -> set[IdleTimer]:
    """The armed timers of a worker's connections; the first use starts the one task that
    closes them all when the worker shuts down (Hypercorn's idle task waited on that too)."""
    timers = _IDLE_TIMERS.get(context)
    if timers is None:
        timers = _IDLE_TIMERS[context] = set()

        async def close_idle_at_shutdown() -> None:
            await context.terminated.wait()
            for timer in list(timers):
                timer.expire()

        watch = asyncio.get_running_loop().create_task(close_idle_at_shutdown())
        _SHUTDOWN_WATCHES.add(watch)
        watch.add_done_callback(_SHUTDOWN_WATCHES.discard)
    return timers


def idle_timer() -> None:
    """Replace each connection's idle task with an `IdleTimer` (a header timeout apart from
    the keep-alive wait; its docstring).

    Hypercorn stops a keep-alive connection's idle task when a request arrives and starts a
    new one when the response is done; the task waits in `asyncio.wait_for`, itself a task: two
    tasks created and cancelled per request, about 2.5% of a worker's CPU (py-spy) for a timer.
    Its one bound, `keep_alive_timeout`, was both the keep-alive wait and the time a request's
    headers could take: a keep-alive long enough for the proxies in front let slowloris
    sockets trickle headers as long.
    """
    from hypercorn.asyncio.tcp_server import TCPServer

    if getattr(TCPServer.__init__, "idle_timer", False):
        return
    original_init = TCPServer.__init__

    def init(self: TCPServer, *args: Any, **kwargs: Any) -> None:
        original_init(self, *args, **kwargs)
        self.idle_task = IdleTimer(self)  # type: ignore[assignment]

    init.idle_timer = True  # type: ignore[attr-defined]
    TCPServer.__init__ = init  # type: ignore[method-assign]
    TCPServer._read_data = _read_data  # type: ignore[method-assign]


def patch_hypercorn() -> None:
    """Apply every patch above, after checking the installed versions (raises
    `UnsupportedServerVersion`). Idempotent."""
    check_versions()
    limit_websocket_compression()
    close_refused_frames()
    bound_connection_close()
    lingering_close()
    bound_websocket_close()
    refuse_transfer_codings_with_400()
    write_response_head_with_body()
    idle_timer()
    response_headers_once_a_second()
    refuse_oversized_bodies_early()
    strict_request_line()
    ignore_data_after_the_last_request()
    end_refused_handshakes()


# Direct writes to a websocket's transport ------------------------------------------------------

WIRE_HIGH_WATER = 64 * 1024  # bytes buffered in the transport before writes wait (asyncio's own)


class WebsocketWire:
    """Writes whole, already encoded websocket frames straight to a connection's TCP transport.

    Hypercorn sends each frame through wsproto and its protocol layers: for a broadcast, the
    same text encoded and framed once per receiver, with a lock, a write and a drain each (about
    60% of a delivery's CPU, bench/). A server's frames are unmasked (RFC 6455 §5.1), so one
    encoded frame is good for every receiver without compression; wsproto keeps no state for
    the data frames it does not send. Writes stop once Hypercorn closes the websocket or the
    transport.
    """

    __slots__ = ("_stream", "_transport", "_writer")

    def __init__(self, stream: Any, writer: asyncio.StreamWriter) -> None:
        self._stream = stream
        self._writer = writer
        self._transport = writer.transport

    @property
    def is_open(self) -> bool:
        """Whether the websocket is still open for data frames."""
        from hypercorn.protocol.ws_stream import ASGIWebsocketState

        return (
            self._stream.state is ASGIWebsocketState.CONNECTED
            and not self._stream.closed
            and not self._transport.is_closing()
        )

    def writable(self) -> bool:
        """Open, with less than `WIRE_HIGH_WATER` bytes waiting in the transport."""
        return self.is_open and self._transport.get_write_buffer_size() < WIRE_HIGH_WATER

    def write(self, frame: bytes) -> None:
        self._transport.write(frame)
        _answered(self._stream)

    async def drain(self) -> None:
        """Wait until the transport's buffer is low again. Raises `ConnectionError` when the
        connection is lost."""
        await self._writer.drain()


def websocket_wire(asgi_send: Any) -> WebsocketWire | None:
    """The wire under an accepted websocket's ASGI `send`, or None where frames must go through
    Hypercorn: HTTP/2 (RFC 8441), an extension such as permessage-deflate negotiated, another
    server (the test client)."""
    from hypercorn.asyncio.tcp_server import TCPServer
    from hypercorn.protocol.h11 import H11Protocol
    from hypercorn.protocol.ws_stream import WSStream

    stream = getattr(asgi_send, "__self__", None)
    if not isinstance(stream, WSStream):
        return None
    protocol = getattr(stream.send, "__self__", None)
    if not isinstance(protocol, H11Protocol):
        return None
    server = getattr(protocol.send, "__self__", None)
    if not isinstance(server, TCPServer):
        return None
    # No `connection` when Hypercorn refused the handshake (data sent before the 101: a 400).
    extensions = getattr(
        getattr(getattr(stream, "connection", None), "_proto", None), "extensions", None
    )
    if extensions is None or any(extension.enabled() for extension in extensions):
        return None
    return WebsocketWire(stream, server.writer)
