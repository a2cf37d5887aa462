"""Stage 2 of admission (app.admission): at most `HTTP_CONCURRENCY` requests run at once, the
others wait first come, first served, and a request that cannot wait is refused at once."""

from __future__ import annotations

import asyncio
from collections import deque

from app.metrics import HTTP_CONCURRENCY_LIMIT, HTTP_REQUESTS_WAITING

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
