"""One websocket connection: its outgoing frames, bounded, and the read loop's rules.

Outgoing frames go straight to the TCP transport when Hypercorn serves the websocket over
HTTP/1.1 without compression (`app.hypercorn_patches.websocket_wire`): a broadcast is encoded
into one frame for all its receivers, and written without a task switch or a lock. While the
client reads too slowly (the transport holds `WIRE_HIGH_WATER` bytes), frames wait in a
backlog that a short-lived task flushes; the backlog is bounded in frames and in time.
Elsewhere (permessage-deflate, HTTP/2, the test client) every frame goes through the ASGI
`send` from that backlog. An idle connection holds no task and no queue of its own: it is read
by the task that serves it.

Close codes (RFC 6455): 1001 server going away, 1008 policy (idle, flood), 1009 frame too big,
1011 server error, 1013 try again later (this client is too slow: its backlog overflowed, or
its oldest unsent frame waited longer than `max_delay`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import struct
import time
import uuid
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Any

import orjson
from redis.exceptions import RedisError
from sqlalchemy.exc import OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError

from app.db import DatabaseTimeoutError
from app.hypercorn_patches import WebsocketWire, websocket_wire
from app.metrics import WEBSOCKET_DROPPED, WEBSOCKET_MESSAGES
from app.realtime.read_rules import FrameVerdict, ReadRules
from app.realtime.room_delivery import LogPosition, RoomDelivery
from app.request_log import TracebackLimit
from app.tracing import frame_span

log = logging.getLogger(__name__)

GOING_AWAY = 1001
POLICY_VIOLATION = 1008
MESSAGE_TOO_BIG = 1009
INTERNAL_ERROR = 1011
TRY_AGAIN_LATER = 1013
CLOSE_TIMEOUT_SECONDS = 2.0
STORE_UNAVAILABLE = "temporarily unavailable (the shared store is down); try again later"
# Failures of a shared store (Redis, the database) that a frame's handler may meet.
STORE_ERRORS = (RedisError, DatabaseTimeoutError, OperationalError, PoolTimeoutError)

FrameHandler = Callable[["Connection", str], Awaitable[None]]
ASGISend = Callable[[dict[str, Any]], Awaitable[None]]


def encode(frame: dict[str, Any] | str) -> str:
    return frame if isinstance(frame, str) else orjson.dumps(frame).decode()


def text_frame(text: str) -> bytes:
    """`text` as one unmasked, unfragmented websocket text frame, as a server sends it
    (RFC 6455 §5.2: FIN and opcode 1, then the payload length in 7, 7+16 or 7+64 bits)."""
    payload = text.encode()
    length = len(payload)
    if length < 126:
        return bytes((0x81, length)) + payload
    if length < 65536:
        return struct.pack("!BBH", 0x81, 126, length) + payload
    return struct.pack("!BBQ", 0x81, 127, length) + payload


SLOW_CONSUMER_DROPS = WEBSOCKET_DROPPED.labels("slow_consumer")


class Connection:
    """A client's websocket as the hub sees it.

    Arguments:
        websocket: Quart's websocket object of this connection (not the context proxy).
        asgi_send: the server's ASGI `send` of this websocket (app.realtime.asgi.ASGI_SEND);
            once accepted, frames go to its wire when it has one, else through it. None:
            through `websocket.send`.
        endpoint: "relay", "nickname", "chat" or "monitor".
        name: the display name (account name, nickname) or None.
        user_id: the authenticated user's id, or None for anonymous clients.
        queue_size: frames waiting for the client before it counts as too slow.
        max_delay: seconds the oldest waiting frame may wait before the client counts as too
            slow (so a burst the client cannot absorb ends in a close, not in minutes of lag).
        tracebacks: the app's limit on tracebacks in the log (`AppState.tracebacks`); None:
            one of its own.
    """

    __slots__ = (
        "id",
        "websocket",
        "_asgi_send",
        "endpoint",
        "name",
        "user_id",
        "claim",
        "_rooms",
        "queue_size",
        "max_delay",
        "close_reason",
        "_closing",
        "_accepted",
        "_wire",
        "_backlog",
        "_flusher",
        "_reader",
        "last_received",
        "_frames_in",
        "_frames_out",
        "_tracebacks",
        "__weakref__",
    )

    def __init__(
        self,
        websocket: Any,
        *,
        asgi_send: ASGISend | None = None,
        endpoint: str,
        name: str | None = None,
        user_id: str | None = None,
        queue_size: int = 256,
        max_delay: float = 2.0,
        tracebacks: TracebackLimit | None = None,
    ) -> None:
        self.id = uuid.uuid4().hex
        self._tracebacks = tracebacks if tracebacks is not None else TracebackLimit()
        self.websocket = websocket
        self._asgi_send = asgi_send
        self.endpoint = endpoint
        self.name = name
        self.user_id = user_id
        # An anonymous client's secret that owns its nickname across reconnects (chat joins).
        self.claim: str | None = None
        # Per room it is in, its delivery there (held frames while joining, the last log
        # position sent). Made when first needed: most connections join no room (relay,
        # nickname, monitor).
        self._rooms: dict[str, RoomDelivery] | None = None
        self.queue_size = queue_size
        self.max_delay = max_delay
        self.close_reason: tuple[int, str] | None = None
        self._closing = False
        self._accepted = False
        self._wire: WebsocketWire | None = None
        # Frames waiting for the client: (queued at, text, its encoded frame or None). Made
        # when first needed: most connections never wait.
        self._backlog: deque[tuple[float, str, bytes | None]] | None = None
        self._flusher: asyncio.Task[None] | None = None
        self._reader: asyncio.Task[Any] | None = None  # the task in serve()
        self.last_received = time.monotonic()
        self._frames_in = WEBSOCKET_MESSAGES.labels(endpoint, "in")
        self._frames_out = WEBSOCKET_MESSAGES.labels(endpoint, "out")

    @property
    def room_name(self) -> str:
        """The name this connection has in rooms; set before any join (a nickname or the
        account's name). Raises `RuntimeError` if it is not."""
        if self.name is None:
            raise RuntimeError("the connection has no name yet")
        return self.name

    @property
    def is_closing(self) -> bool:
        return self._closing

    @property
    def rooms(self) -> frozenset[str]:
        """The rooms this connection is in."""
        return frozenset(self._rooms) if self._rooms else frozenset()

    def in_room(self, room: str) -> bool:
        return self._rooms is not None and room in self._rooms

    def enter_room(self, room: str) -> None:
        """Enter `room` with its traffic held until `welcome(room, …)`: so the room's state is
        a joiner's first frame of it (docs/websockets.md: `presence_state`, then `history`),
        and nothing sent meanwhile is lost (app.realtime.room_delivery)."""
        if self._rooms is None:
            self._rooms = {}
        self._rooms[room] = RoomDelivery()

    def welcome(self, room: str, position: LogPosition | None) -> None:
        """The joiner was sent the room's log up to `position`: send what was held for `room`,
        in order, except the log's messages it already has."""
        delivery = self._rooms.get(room) if self._rooms is not None else None
        if delivery is not None:
            for text in delivery.welcome(position):
                self.send(text)

    def offer(
        self,
        room: str | None,
        text: str,
        wire_frame: bytes | None = None,
        position: LogPosition | None = None,
    ) -> int:
        """Send `text` (framed as `wire_frame` when given), or hold it while this connection
        joins `room`, or drop it when it is a log message (`position`) already sent; 1 if it
        was taken now (a held frame is counted when sent)."""
        if room is not None and self._rooms is not None:
            delivery = self._rooms.get(room)
            if delivery is not None and not delivery.take(text, position):
                return 0
        return 1 if self.enqueue(text, wire_frame) else 0

    def admit(self, room: str, position: LogPosition) -> bool:
        """Whether a log message of `room` at `position` is new to this connection; if so it
        becomes the last sent (`RoomDelivery.admit`). False outside the room."""
        delivery = self._rooms.get(room) if self._rooms is not None else None
        return delivery is not None and delivery.admit(position)

    def leave_room(self, room: str) -> None:
        """Leave `room`; whatever was held for it is dropped."""
        if self._rooms is not None:
            self._rooms.pop(room, None)

    @property
    def waiting_frames(self) -> int:
        """Frames queued for a client that is behind (0 while it keeps up)."""
        return len(self._backlog) if self._backlog else 0

    def take_waiting(self) -> list[str]:
        """Remove and return the frames waiting for the client, oldest first (tests; a
        connection not yet accepted keeps every frame it is sent)."""
        backlog, self._backlog = self._backlog, None
        return [text for _, text, _ in backlog or ()]

    def send(self, frame: dict[str, Any] | str, wire_frame: bytes | None = None) -> bool:
        """Send a frame without waiting (`wire_frame`: see `enqueue`). A client too far behind
        is closed with 1013."""
        if self.enqueue(encode(frame), wire_frame):
            self._frames_out.inc()
            return True
        return False

    def enqueue(self, text: str, wire_frame: bytes | None = None) -> bool:
        """`send` of an encoded frame (`wire_frame`: `text_frame(text)`, when the caller made
        it once for many receivers), not counted in `websocket_messages_total` (a broadcast
        counts its deliveries at once: `Hub.deliver`). False if the frame was not taken."""
        if self._closing:
            return False
        backlog = self._backlog
        wire = self._wire
        if not backlog and wire is not None and wire.writable():
            wire.write(wire_frame if wire_frame is not None else text_frame(text))
            return True
        now = time.monotonic()
        if backlog:
            if now - backlog[0][0] > self.max_delay:
                self._too_slow(
                    f"a frame waited more than {self.max_delay:g} s: the client is behind"
                )
                return False
            if len(backlog) >= self.queue_size:
                self._too_slow("send queue full: the client reads too slowly")
                return False
        else:
            backlog = self._backlog = deque()
        backlog.append((now, text, wire_frame))
        if self._accepted and self._flusher is None:
            self._flusher = asyncio.get_running_loop().create_task(self._flush())
        return True

    def _too_slow(self, reason: str) -> None:
        SLOW_CONSUMER_DROPS.inc()
        self.close(TRY_AGAIN_LATER, reason)

    def send_error(self, message: str, **extra: Any) -> None:
        self.send({"event": "error", "msg": message, **extra})

    def close(self, code: int, reason: str = "") -> None:
        """Ask the connection to close with `code`: its reading stops, and the task serving it
        sends the close frame."""
        if self._closing:
            return
        self.close_reason = (code, reason)
        self._closing = True
        reader = self._reader
        if reader is not None and reader is not asyncio.current_task():
            reader.cancel()  # serve() tells this cancellation from the server's

    async def _flush(self) -> None:
        """Write the backlog out as the client takes it."""
        backlog = self._backlog
        wire = self._wire
        try:
            while backlog and not self._closing:
                if wire is not None:
                    if not wire.is_open:
                        return
                    if not wire.writable():
                        await wire.drain()
                        continue
                    _, text, frame = backlog.popleft()
                    wire.write(frame if frame is not None else text_frame(text))
                    continue
                _, text, _ = backlog.popleft()
                if self._asgi_send is not None:
                    await self._asgi_send({"type": "websocket.send", "bytes": None, "text": text})
                else:
                    await self.websocket.send(text)
        except Exception as error:
            if not _is_disconnect(error):
                log.error(
                    "websocket %s: writing failed: %s",
                    self.endpoint,
                    type(error).__name__,
                    exc_info=self._tracebacks.exc_info(error),
                )
                self.close(INTERNAL_ERROR, "server error")
        finally:
            self._flusher = None

    async def handle_frame(
        self, data: str | bytes | None, on_text: FrameHandler, rules: ReadRules
    ) -> None:
        """One frame from the client: `rules` first (a frame over `max_message_bytes` closes
        with 1009, one over the rate gets an error frame, a flood closes with 1008; a binary
        frame gets an error frame), then `on_text`. A store outage in `on_text` is an error
        frame (`unavailable`); the connection lives on. `None` is an empty binary frame (Quart
        hands `b""` over as `None`: Autobahn|Testsuite 1.2.1, 9.8.1)."""
        if data is None:
            data = b""
        self.last_received = time.monotonic()
        self._frames_in.inc()
        size = len(data) if isinstance(data, bytes) else len(data.encode())
        if size > rules.max_message_bytes:
            self.close(MESSAGE_TOO_BIG, f"frames are limited to {rules.max_message_bytes} bytes")
            return
        verdict = rules.check(self)
        if verdict is FrameVerdict.RATE_LIMITED:
            self.send_error(f"rate limited: at most {rules.rate}")
            return
        if verdict is FrameVerdict.FLOOD:
            self.close(POLICY_VIOLATION, "too many frames: flood limit reached")
            return
        if isinstance(data, bytes):
            self.send_error("binary frames are not supported; send text")
            return
        try:
            with frame_span(self.endpoint, data):
                await on_text(self, data)
        except STORE_ERRORS:
            # Redis or the database is down: this frame failed, the connection lives on.
            self.send_error(STORE_UNAVAILABLE, code="unavailable")

    async def serve(self, on_text: FrameHandler, rules: ReadRules) -> None:
        """Once accepted: read and answer frames until the client leaves or `close()` is
        called, then close the socket. Returns normally in every case (a handler error closes
        with 1011 and is logged); a cancellation by the server propagates."""
        self._accepted = True
        if self._asgi_send is not None:
            self._wire = websocket_wire(self._asgi_send)
        if self._backlog and self._flusher is None:  # frames queued before the handshake
            self._flusher = asyncio.get_running_loop().create_task(self._flush())
        reader = self._reader = asyncio.current_task()
        try:
            # Read here, in the task serving the connection (no reader task of its own: an
            # idle connection holds nothing more than its frames, bench/).
            while not self._closing:
                try:
                    # The loop's clock is time.monotonic(), as last_received is.
                    async with asyncio.timeout_at(self.last_received + rules.idle_timeout):
                        data = await self.websocket.receive()
                except TimeoutError:
                    self.close(
                        POLICY_VIOLATION, f"idle for {rules.idle_timeout:.0f} s: send a ping"
                    )
                    break
                await self.handle_frame(data, on_text, rules)
        except asyncio.CancelledError:
            # Ours (close() from elsewhere) is absorbed; the server's is not.
            if not (self._closing and reader is not None and reader.uncancel() == 0):
                raise
        except Exception as error:
            if not _is_disconnect(error):
                log.error(
                    "websocket %s failed: %s",
                    self.endpoint,
                    type(error).__name__,
                    exc_info=self._tracebacks.exc_info(error),
                )
                self.close(INTERNAL_ERROR, "server error")
        finally:
            self._reader = None
            self._closing = True
            flusher = self._flusher
            if flusher is not None:
                flusher.cancel()
                # Bounded: a write waiting on a stalled client must not hold the close back.
                await asyncio.wait({flusher}, timeout=CLOSE_TIMEOUT_SECONDS)
        if self.close_reason is not None:
            code, reason = self.close_reason
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.websocket.close(code, reason), CLOSE_TIMEOUT_SECONDS)


def _is_disconnect(error: BaseException) -> bool:
    return isinstance(error, (asyncio.CancelledError, ConnectionError)) or (
        type(error).__name__ in {"WebsocketDisconnect", "ConnectionClosed"}
    )
