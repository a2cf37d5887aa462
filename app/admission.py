"""Admission control: a worker bounds the work it does at once, never the waiting on its clients.

An ASGI middleware around the app, for HTTP requests (websockets and the probes `/healthz`,
`/readyz`, `/metrics` pass straight through). A request goes through three stages:

0. **Framing.** A request with both `Content-Length` and `Transfer-Encoding` is refused with
   400 and its connection closed (RFC 9112 §6.1), the probes included; so is one with several
   `Host` headers, an invalid one, or an absolute-form target that is not an http(s) URI
   (RFC 9112 §3.2). (h11 refuses a
   `Transfer-Encoding` other than `chunked` before the app: app.hypercorn_patches.)
1. **Client I/O, bounded in time and per address.** A request that declares a body
   (`Content-Length` or `Transfer-Encoding`) has it read in full before it counts as work:
   within `HTTP_BODY_TIMEOUT` seconds (else 408, connection closed), at most
   `MAX_CONTENT_LENGTH` bytes (else 413), and with at most `HTTP_CLIENT_MAX_BODIES` bodies
   arriving at once from one client address (else 429). A client trickling its upload holds a
   socket and a buffer, nothing else.
2. **Admission.** At most `HTTP_CONCURRENCY` requests run at once; the others wait in a FIFO
   queue of at most `HTTP_QUEUE_MAX`. A request that cannot join the queue, or that has waited
   longer than `HTTP_QUEUE_TIMEOUT`, is answered 503 with `Retry-After` at once, by this
   middleware, for a few microseconds of work: a client sees a fast refusal, never its own
   time-out. Shed requests are counted (`http_requests_shed_total`), not logged one by one.
3. **Release at the response's start.** The slot is handed to the next waiting request when
   the app starts its response (or ends without one): writing the response to a slow reader
   holds no slot.

Why these bounds (docs/performance.md, measured by `python -m bench --suite concurrency`):
- A fixed limit, the database pool's size (`DB_POOL_SIZE`, 8), not an adaptive one. A worker
  runs one event loop: past a few requests at once, more only lengthen every loop turn and buy
  no throughput on the CPU; with a database 20 ms away, the pool is what bounds throughput, and
  fewer requests than connections leave connections idle while more would open and close
  overflow connections for each (measured: 9% of requests did at 15 over a pool of 5). An
  AIMD or gradient limit (Netflix's concurrency-limits, Envoy) steers by latency or loop lag;
  at high connection counts both rise with the work of reading and refusing the requests
  outside the limit as much as with the admitted ones (measured: loop lag p50 10-20 ms at
  4,000 connections with 10 admitted), so it would shrink the limit where the pool, not the
  CPU, is the bound. docs/performance.md has the figures.
- `HTTP_QUEUE_TIMEOUT` 2 s: clients that retry at once (`wrk`, or a crowd pressing reload)
  come back N/timeout times a second; at 1 s, 1,000 connections on two workers had 1,500-2,600
  of 8 s's requests shed and kept 0.6-0.7 of the throughput, at 2 s none were shed.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
from collections import deque
from collections.abc import Awaitable
from typing import Any

import orjson

from app.error_bodies import BUSY_SECONDS, error_body
from app.metrics import (
    HTTP_CLIENT_REFUSED,
    HTTP_CONCURRENCY_LIMIT,
    HTTP_REQUESTS_SHED,
    HTTP_REQUESTS_WAITING,
)

log = logging.getLogger(__name__)

ASGIApp = Any
Scope = dict[str, Any]
Message = dict[str, Any]
EXEMPT_PATHS = frozenset({"/healthz", "/readyz", "/metrics"})
SWEEP_SECONDS = 0.05  # how often the queue's expired heads are shed while no slot frees


class AdmissionQueue:
    """At most `limit` holders at once; the others wait first come, first served.

    A waiter is handed a freed slot directly (no newcomer can take it first). One that has
    waited longer than `timeout` seconds, or finds `max_waiting` already waiting, is refused.
    Expired waiters are found at the queue's head, where the oldest wait: when a slot frees,
    and by a sweep every `SWEEP_SECONDS` while some wait (no timer per request).
    """

    def __init__(self, limit: int, *, timeout: float, max_waiting: int) -> None:
        self.limit = limit
        self.timeout = timeout
        self.max_waiting = max_waiting
        self.in_flight = 0
        self._waiting: deque[tuple[float, asyncio.Future[bool]]] = deque()
        self._sweeper: asyncio.Task[None] | None = None
        HTTP_CONCURRENCY_LIMIT.set(limit)

    @property
    def waiting(self) -> int:
        return len(self._waiting)

    async def acquire(self) -> str | None:
        """Wait for a slot. Returns None once admitted (call `release()` after), or why the
        request is refused: "queue_full" or "queue_timeout"."""
        if self.in_flight < self.limit and not self._waiting:
            self.in_flight += 1
            return None
        if len(self._waiting) >= self.max_waiting:
            return "queue_full"
        loop = asyncio.get_running_loop()
        handed: asyncio.Future[bool] = loop.create_future()
        self._waiting.append((loop.time(), handed))
        HTTP_REQUESTS_WAITING.inc()
        if self._sweeper is None:
            self._sweeper = loop.create_task(self._sweep())
        try:
            admitted = await handed
        except asyncio.CancelledError:
            if handed.done() and not handed.cancelled() and handed.result():
                self.release()  # handed a slot as the request was cancelled: pass it on
            raise
        finally:
            HTTP_REQUESTS_WAITING.dec()
        return None if admitted else "queue_timeout"

    def release(self) -> None:
        """Give a slot back: to the oldest waiter still within its time, else to the pool."""
        if self.in_flight <= self.limit:
            now = asyncio.get_running_loop().time()
            while self._waiting:
                queued_at, handed = self._waiting.popleft()
                if handed.done():  # its request was cancelled while waiting
                    continue
                if now - queued_at > self.timeout:
                    handed.set_result(False)
                    continue
                handed.set_result(True)  # the slot changes hands; in_flight is unchanged
                return
        self.in_flight -= 1

    def _shed_expired(self) -> None:
        deadline = asyncio.get_running_loop().time() - self.timeout
        while self._waiting and self._waiting[0][0] < deadline:
            _, handed = self._waiting.popleft()
            if not handed.done():
                handed.set_result(False)

    async def _sweep(self) -> None:
        try:
            while self._waiting:
                await asyncio.sleep(SWEEP_SECONDS)
                self._shed_expired()
        finally:
            self._sweeper = None


class Admission:
    """ASGI middleware applying the stages above to `app`.

    Arguments:
        app: the ASGI app.
        limit: requests run at once (`HTTP_CONCURRENCY`); 0: no limit (stage 2 off).
        queue_timeout: seconds a request may wait for a slot (`HTTP_QUEUE_TIMEOUT`).
        queue_max: requests that may wait at once (`HTTP_QUEUE_MAX`).
        body_timeout: seconds a request's body may take to arrive (`HTTP_BODY_TIMEOUT`).
        client_max_bodies: bodies one client address may have arriving at once
            (`HTTP_CLIENT_MAX_BODIES`).
        max_body_bytes: the largest body (`MAX_CONTENT_LENGTH`).
        scheduler_prefix: where the scheduler API lives (`SCHEDULER_API_PREFIX`): its errors
            are in Flask-APScheduler's shape.
    """

    def __init__(
        self,
        app: ASGIApp,
        *,
        limit: int,
        queue_timeout: float,
        queue_max: int,
        body_timeout: float,
        client_max_bodies: int,
        max_body_bytes: int,
        scheduler_prefix: str = "/scheduler",
    ) -> None:
        self.app = app
        self.scheduler_prefix = scheduler_prefix
        self.queue = (
            AdmissionQueue(limit, timeout=queue_timeout, max_waiting=queue_max)
            if limit > 0
            else None
        )
        self.body_timeout = body_timeout
        self.client_max_bodies = client_max_bodies
        self.max_body_bytes = max_body_bytes
        self._bodies_arriving: dict[str, int] = {}

    def _answer(
        self,
        scope: Scope,
        send: Any,
        status: int,
        message: str,
        headers: list[tuple[bytes, bytes]] | None = None,
        *,
        close: bool = False,
    ) -> Awaitable[None]:
        return _answer(
            scope,
            send,
            status,
            message,
            headers,
            close=close,
            scheduler_prefix=self.scheduler_prefix,
        )

    def __call__(self, scope: Scope, receive: Any, send: Any) -> Awaitable[None]:
        # Passed through without a coroutine of this middleware's own: a websocket would keep
        # its frame alive for the connection's whole life (bench/, idle memory).
        if scope["type"] != "http":
            passed: Awaitable[None] = self.app(scope, receive, send)
            return passed
        lengths = codings = hosts = 0
        host = b""
        for name, value in scope["headers"]:
            if name == b"content-length":
                lengths += 1
            elif name == b"transfer-encoding":
                codings += 1
            elif name == b"host":
                hosts += 1
                host = value
        refusal = _request_target_refusal(scope, hosts, host)
        if refusal is not None:
            return self._answer(scope, send, 400, refusal, close=True)
        if lengths and codings:
            # RFC 9112 §6.1: such a request may be smuggling a second one behind its body.
            return self._answer(
                scope,
                send,
                400,
                "Content-Length and Transfer-Encoding together are refused",
                close=True,
            )
        if scope["path"] in EXEMPT_PATHS:
            exempt: Awaitable[None] = self.app(scope, receive, send)
            return exempt
        return self._admit(scope, receive, send, has_body=bool(lengths or codings))

    async def _admit(self, scope: Scope, receive: Any, send: Any, *, has_body: bool) -> None:
        if has_body:
            receive = await self._read_body(scope, receive, send)
            if receive is None:
                return
        queue = self.queue
        if queue is None:
            await self.app(scope, receive, send)
            return
        refused = await queue.acquire()
        if refused is not None:
            HTTP_REQUESTS_SHED.labels(refused).inc()
            await self._answer(
                scope,
                send,
                503,
                "the service is busy; try again shortly",
                [(b"retry-after", str(BUSY_SECONDS).encode())],
            )
            return
        released = False

        async def send_releasing(message: Message) -> None:
            nonlocal released
            if not released and message["type"] == "http.response.start":
                released = True
                queue.release()
            await send(message)

        try:
            await self.app(scope, receive, send_releasing)
        finally:
            if not released:
                queue.release()

    async def _read_body(self, scope: Scope, receive: Any, send: Any) -> Any:
        """Read the whole body within the bounds of stage 1. Returns a `receive` that replays
        it to the app, or None when the request was answered here (408, 413, 429) or its
        client left."""
        declared = _content_length(scope)
        if declared is not None and declared > self.max_body_bytes:
            HTTP_CLIENT_REFUSED.labels("body_too_large").inc()
            await self._answer(scope, send, 413, _too_large(self.max_body_bytes), close=True)
            return None
        client = scope["client"][0] if scope.get("client") else ""
        arriving = self._bodies_arriving.get(client, 0)
        if arriving >= self.client_max_bodies:
            HTTP_CLIENT_REFUSED.labels("client_bodies").inc()
            await self._answer(
                scope,
                send,
                429,
                f"too many requests from this address are still sending their body "
                f"(at most {self.client_max_bodies} at once)",
                [(b"retry-after", str(BUSY_SECONDS).encode())],
                close=True,
            )
            return None
        self._bodies_arriving[client] = arriving + 1
        chunks: list[bytes] = []
        size = 0
        try:
            async with asyncio.timeout(self.body_timeout):
                while True:
                    message = await receive()
                    if message["type"] != "http.request":
                        return None  # the client left: nobody to answer
                    chunk = message.get("body", b"")
                    size += len(chunk)
                    if size > self.max_body_bytes:
                        HTTP_CLIENT_REFUSED.labels("body_too_large").inc()
                        await self._answer(
                            scope, send, 413, _too_large(self.max_body_bytes), close=True
                        )
                        return None
                    if chunk:
                        chunks.append(chunk)
                    if not message.get("more_body", False):
                        break
        except TimeoutError:
            HTTP_CLIENT_REFUSED.labels("body_timeout").inc()
            await self._answer(
                scope,
                send,
                408,
                f"the request body did not arrive within {self.body_timeout:g} s",
                close=True,
            )
            return None
        finally:
            left = self._bodies_arriving[client] - 1
            if left:
                self._bodies_arriving[client] = left
            else:
                del self._bodies_arriving[client]
        return _replay(b"".join(chunks), receive)


# RFC 3986 §3.2.2-3.2.3: an IP literal, or a reg-name / IPv4 address, and a port.
_VALID_HOST = re.compile(rb"^(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9._~!$&'()*+,;=%-]*)(:[0-9]{0,5})?$")
_HTTP_ABSOLUTE_FORM = re.compile(rb"^https?://", re.IGNORECASE)


def _request_target_refusal(scope: Scope, hosts: int, host: bytes) -> str | None:
    """Why the request's target or `Host` is one RFC 9112 refuses (§3.2: a missing Host in
    HTTP/1.1, several, or an invalid one is a 400; §3.2.2: the absolute form is an http(s)
    URI), or None."""
    if hosts > 1:
        return "more than one Host header"
    if hosts == 1 and _VALID_HOST.match(host) is None:
        return "the Host header is not a host[:port]"
    raw_path = scope.get("raw_path") or b"/"
    if raw_path[:1] != b"/" and raw_path != b"*" and _HTTP_ABSOLUTE_FORM.match(raw_path) is None:
        return "the request target is neither a path nor an http(s) URI"
    return None


def _replay(body: bytes, receive: Any) -> Any:
    """A `receive` whose first message is the whole `body`; later calls wait on the server's
    (for `http.disconnect`)."""
    delivered = False

    async def replay() -> Message:
        nonlocal delivered
        if not delivered:
            delivered = True
            return {"type": "http.request", "body": body, "more_body": False}
        message: Message = await receive()
        return message

    return replay


def _content_length(scope: Scope) -> int | None:
    for name, value in scope["headers"]:
        if name == b"content-length":
            with contextlib.suppress(ValueError):
                return int(value)
    return None


def _too_large(limit: int) -> str:
    return f"the request body is larger than {limit} bytes"


async def _answer(
    scope: Scope,
    send: Any,
    status: int,
    message: str,
    headers: list[tuple[bytes, bytes]] | None = None,
    *,
    close: bool = False,
    scheduler_prefix: str = "/scheduler",
) -> None:
    """An error answered by this middleware, in the shape the app's own errors have: the
    envelope (contract §2), or Flask-APScheduler's `{"error_message"}` under the scheduler
    API's prefix."""
    payload = error_body(
        status,
        message,
        method=scope["method"],
        path=scope["path"],
        scheduler_prefix=scheduler_prefix,
    )
    body = orjson.dumps(payload, option=orjson.OPT_SORT_KEYS)
    response_headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
        (b"cache-control", b"no-store"),
        (b"x-content-type-options", b"nosniff"),
        *(headers or []),
    ]
    if close:  # the client may still be sending: h11 then closes once the answer is out
        response_headers.append((b"connection", b"close"))
    await send({"type": "http.response.start", "status": status, "headers": response_headers})
    await send({"type": "http.response.body", "body": body})
