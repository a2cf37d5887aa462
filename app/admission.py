"""Admission control: at most `HTTP_CONCURRENCY` HTTP requests of a worker run at once.

Past that, a request waits for a slot (first come, first served) before the app sees it. A
worker pressed by more requests than its CPU can serve otherwise runs all of them at once: each
event-loop turn then carries the steps of every one, so timers, websocket frames and health
probes wait behind them (the loop lag; bench/ measured a p99 of 50-100 ms at 32 requests per
worker, 20 ms at 8). Waiting requests cost nothing until admitted, throughput is unchanged, and
the loop stays responsive. The default, 8, is the Flask original's concurrency per worker
(gunicorn, 8 threads). Websockets and the probes (`/healthz`, `/readyz`, `/metrics`) are never
held: a probe must answer while API requests queue. (Slots of their own for the probes were
measured and dropped: under a flood of `/healthz` they took its loop-lag p99 from 20 to 10 ms
and cost 5% of its throughput, bench/.)
"""

from __future__ import annotations

import asyncio
from typing import Any

from app.metrics import HTTP_REQUESTS_WAITING

ASGIApp = Any
EXEMPT_PATHS = frozenset({"/healthz", "/readyz", "/metrics"})


class AdmissionLimit:
    """ASGI middleware admitting at most `limit` HTTP requests at once (0: no limit)."""

    def __init__(self, app: ASGIApp, limit: int) -> None:
        self.app = app
        self.limit = limit
        self.slots = asyncio.Semaphore(limit) if limit > 0 else None

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if self.slots is None or scope["type"] != "http" or scope["path"] in EXEMPT_PATHS:
            await self.app(scope, receive, send)
            return
        if self.slots.locked():
            HTTP_REQUESTS_WAITING.inc()
            try:
                await self.slots.acquire()
            finally:
                HTTP_REQUESTS_WAITING.dec()
        else:
            await self.slots.acquire()
        try:
            await self.app(scope, receive, send)
        finally:
            self.slots.release()
