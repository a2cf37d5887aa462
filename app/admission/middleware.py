"""The admission middleware: the three stages of app.admission, in order, around the app."""

from __future__ import annotations

from collections.abc import Awaitable
from functools import partial
from typing import Any

import orjson

from app.admission.bodies import BodyReader
from app.admission.framing import framing_refusal
from app.admission.queue import AdmissionQueue
from app.error_bodies import BUSY_SECONDS, error_body
from app.metrics import HTTP_REQUESTS_SHED

ASGIApp = Any
Scope = dict[str, Any]
Message = dict[str, Any]
EXEMPT_PATHS = frozenset({"/healthz", "/readyz", "/metrics"})


class Admission:
    """ASGI middleware applying the stages of app.admission to `app`: framing (framing.py),
    bodies (bodies.py), the queue (queue.py).

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
        self.bodies = BodyReader(
            body_timeout=body_timeout,
            client_max_bodies=client_max_bodies,
            max_body_bytes=max_body_bytes,
        )

    async def _answer(
        self,
        scope: Scope,
        send: Any,
        status: int,
        message: str,
        headers: list[tuple[bytes, bytes]] | None = None,
        *,
        close: bool = False,
    ) -> None:
        """An error answered by this middleware, in the shape the app's own errors have: the
        envelope (contract §2), or Flask-APScheduler's `{"error_message"}` under the scheduler
        API's prefix."""
        payload = error_body(
            status,
            message,
            method=scope["method"],
            path=scope["path"],
            scheduler_prefix=self.scheduler_prefix,
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

    def __call__(self, scope: Scope, receive: Any, send: Any) -> Awaitable[None]:
        # Passed through without a coroutine of this middleware's own: a websocket would keep
        # its frame alive for the connection's whole life (bench/, idle memory).
        if scope["type"] != "http":
            passed: Awaitable[None] = self.app(scope, receive, send)
            return passed
        refusal, has_body = framing_refusal(scope)
        if refusal is not None:
            return self._answer(scope, send, 400, refusal, close=True)
        if scope["path"] in EXEMPT_PATHS:
            exempt: Awaitable[None] = self.app(scope, receive, send)
            return exempt
        return self._admit(scope, receive, send, has_body=has_body)

    async def _admit(self, scope: Scope, receive: Any, send: Any, *, has_body: bool) -> None:
        if has_body:
            receive = await self.bodies.read(scope, receive, partial(self._answer, scope, send))
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
