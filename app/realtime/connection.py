"""One websocket connection: a bounded send queue, its own writer, and the read loop's rules.

Close codes (RFC 6455): 1001 server going away, 1008 policy (idle, flood), 1009 frame too big,
1011 server error, 1013 try again later (this client is too slow: its send queue overflowed,
or its oldest unsent frame waited longer than `max_delay`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Any

import orjson
from limits import RateLimitItem
from redis.exceptions import RedisError
from sqlalchemy.exc import OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError

from app.db import DatabaseTimeoutError
from app.metrics import WEBSOCKET_DROPPED, WEBSOCKET_MESSAGES

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


def encode(frame: dict[str, Any] | str) -> str:
    return frame if isinstance(frame, str) else orjson.dumps(frame).decode()


SLOW_CONSUMER_DROPS = WEBSOCKET_DROPPED.labels("slow_consumer")


class Connection:
    """A client's websocket as the hub sees it.

    Arguments:
        websocket: Quart's websocket object of this connection (not the context proxy).
        asgi_send: the server's ASGI `send` of this websocket (app.realtime.asgi.ASGI_SEND);
            frames are written through it once accepted. None: through `websocket.send`.
        endpoint: "relay", "nickname", "chat" or "monitor".
        name: the display name (account name, nickname) or None.
        user_id: the authenticated user's id, or None for anonymous clients.
        queue_size: frames waiting to be written before the client counts as too slow.
        max_delay: seconds the oldest waiting frame may wait before the client counts as too
            slow (so a burst the client cannot absorb ends in a close, not in minutes of lag).
    """

    def __init__(
        self,
        websocket: Any,
        *,
        asgi_send: Callable[[dict[str, Any]], Awaitable[None]] | None = None,
        endpoint: str,
        name: str | None = None,
        user_id: str | None = None,
        queue_size: int = 256,
        max_delay: float = 2.0,
    ) -> None:
        self.id = uuid.uuid4().hex
        self.websocket = websocket
        self._asgi_send = asgi_send
        self.endpoint = endpoint
        self.name = name
        self.user_id = user_id
        self.rooms: set[str] = set()
        # Room traffic held while this connection is being welcomed to the room (Hub.welcomed).
        self.held: dict[str, list[str]] = {}
        self.queue: asyncio.Queue[str] = asyncio.Queue(queue_size)
        self.max_delay = max_delay
        self._queued_at: deque[float] = deque()  # when each frame in `queue` was queued
        self.close_reason: tuple[int, str] | None = None
        self._closing = False
        # Resolved by close() while serve() waits: a future, not a task waiting on an event
        # (per connection, for its whole life: bench/, idle memory).
        self._close_requested: asyncio.Future[None] | None = None
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

    def send(self, frame: dict[str, Any] | str) -> bool:
        """Queue a frame without waiting. A full queue closes the connection with 1013."""
        if self.enqueue(encode(frame)):
            self._frames_out.inc()
            return True
        return False

    def enqueue(self, text: str) -> bool:
        """`send` of an encoded frame, not counted in `websocket_messages_total` (a broadcast
        counts its deliveries at once: `Hub.deliver`)."""
        if self.is_closing:
            return False
        now = time.monotonic()
        if self._queued_at and now - self._queued_at[0] > self.max_delay:
            self._too_slow(f"a frame waited more than {self.max_delay:g} s: the client is behind")
            return False
        try:
            self.queue.put_nowait(text)
        except asyncio.QueueFull:
            self._too_slow("send queue full: the client reads too slowly")
            return False
        self._queued_at.append(now)
        return True

    def _too_slow(self, reason: str) -> None:
        SLOW_CONSUMER_DROPS.inc()
        self.close(TRY_AGAIN_LATER, reason)

    def send_error(self, message: str, **extra: Any) -> None:
        self.send({"event": "error", "msg": message, **extra})

    def close(self, code: int, reason: str = "") -> None:
        """Ask the connection to close with `code`; the serving task does it."""
        if not self._closing:
            self.close_reason = (code, reason)
            self._closing = True
            if self._close_requested is not None and not self._close_requested.done():
                self._close_requested.set_result(None)

    async def _write_loop(self) -> None:
        asgi_send = self._asgi_send
        queue = self.queue
        queued_at = self._queued_at
        while True:
            text = await queue.get()
            queued_at.popleft()
            if asgi_send is None:
                await self.websocket.send(text)
                continue
            await asgi_send({"type": "websocket.send", "bytes": None, "text": text})
            while not queue.empty():  # a backlog goes out without a task switch per frame
                text = queue.get_nowait()
                queued_at.popleft()
                await asgi_send({"type": "websocket.send", "bytes": None, "text": text})

    async def _read_loop(self, on_text: FrameHandler, rules: ReadRules) -> None:
        while True:
            data = await self.websocket.receive()
            self.last_received = time.monotonic()
            self._frames_in.inc()
            size = len(data) if isinstance(data, bytes) else len(data.encode())
            if size > rules.max_message_bytes:
                self.close(
                    MESSAGE_TOO_BIG, f"frames are limited to {rules.max_message_bytes} bytes"
                )
                return
            if not rules.allow(self):
                continue
            if isinstance(data, bytes):
                self.send_error("binary frames are not supported; send text")
                continue
            try:
                await on_text(self, data)
            except STORE_ERRORS:
                # Redis or the database is down: this frame failed, the connection lives on.
                self.send_error(STORE_UNAVAILABLE, code="unavailable")

    async def serve(self, on_text: FrameHandler, rules: ReadRules) -> None:
        """Read and write until the client leaves or `close()` is called; then close the socket.
        Returns normally in every case (a handler error closes with 1011 and is logged)."""
        writer = asyncio.create_task(self._write_loop())
        reader = asyncio.create_task(self._read_loop(on_text, rules))
        closing = self._close_requested = asyncio.get_running_loop().create_future()
        if self._closing:
            closing.set_result(None)
        try:
            while True:
                idle_left = self.last_received + rules.idle_timeout - time.monotonic()
                done, _ = await asyncio.wait(
                    {writer, reader, closing},
                    timeout=max(idle_left, 0),
                    return_when=asyncio.FIRST_COMPLETED,
                )
                if done:
                    break
                if time.monotonic() - self.last_received >= rules.idle_timeout:
                    self.close(
                        POLICY_VIOLATION, f"idle for {rules.idle_timeout:.0f} s: send a ping"
                    )
                    break
            for task in done:
                if task is not closing and not task.cancelled() and task.exception() is not None:
                    error = task.exception()
                    if error is not None and not _is_disconnect(error):
                        log.error("websocket %s failed", self.endpoint, exc_info=error)
                        self.close(INTERNAL_ERROR, "server error")
        finally:
            for task in (writer, reader, closing):
                task.cancel()
            # Bounded: a cancelled receive must not hold the close frame back.
            await asyncio.wait({writer, reader, closing}, timeout=CLOSE_TIMEOUT_SECONDS)
        self._closing = True
        if self.close_reason is not None:
            code, reason = self.close_reason
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.websocket.close(code, reason), CLOSE_TIMEOUT_SECONDS)


def _is_disconnect(error: BaseException) -> bool:
    return isinstance(error, (asyncio.CancelledError, ConnectionError)) or (
        type(error).__name__ in {"WebsocketDisconnect", "ConnectionClosed"}
    )


class ReadRules:
    """Limits every connection of a worker reads under: size, idle time, and a rate limit.

    Past `rate` frames in its window (a fixed window that starts at a connection's first frame,
    as `limits`' fixed-window strategy counts) a client gets an error frame per extra frame;
    after `flood_strikes` such frames in a row it is closed with 1008.
    """

    def __init__(
        self,
        *,
        max_message_bytes: int,
        idle_timeout: float,
        rate: RateLimitItem,
        flood_strikes: int,
    ) -> None:
        self.max_message_bytes = max_message_bytes
        self.idle_timeout = idle_timeout
        self.rate = rate
        self.flood_strikes = flood_strikes
        # Counted here, per connection, not in `limits`' MemoryStorage: its expiry runs in a
        # thread it starts anew every 10 ms while frames arrive, scanning every key under a
        # lock, against the event loop for the GIL (py-spy on a fan-out worker).
        self._window_seconds = float(rate.get_expiry())
        self._windows: dict[str, tuple[float, int]] = {}  # connection id: (window start, frames)
        self._strikes: dict[str, int] = {}

    def allow(self, connection: Connection) -> bool:
        now = time.monotonic()
        started, frames = self._windows.get(connection.id, (now, 0))
        if now - started >= self._window_seconds:
            started, frames = now, 0
        self._windows[connection.id] = (started, frames + 1)
        if frames < self.rate.amount:
            self._strikes.pop(connection.id, None)
            return True
        strikes = self._strikes.get(connection.id, 0) + 1
        self._strikes[connection.id] = strikes
        if strikes >= self.flood_strikes:
            connection.close(POLICY_VIOLATION, "too many frames: flood limit reached")
        else:
            connection.send_error(f"rate limited: at most {self.rate}")
        return False

    def forget(self, connection: Connection) -> None:
        self._windows.pop(connection.id, None)
        self._strikes.pop(connection.id, None)
