"""The memory sampler behind `/ws` (app.ws.monitor): one psutil sample per tick per
worker, sent to every client watching (`MemoryMonitor`)."""

from __future__ import annotations

import asyncio
import contextlib

import psutil

from app.realtime.connection import Connection, encode, text_frame


def memory_sample() -> dict[str, int | float]:
    """`psutil.virtual_memory()` as a dict: bytes as integers, `percent` a float."""
    sample: dict[str, int | float] = psutil.virtual_memory()._asdict()
    return sample


class MemoryMonitor:
    """Samples memory once per interval while at least one client watches."""

    def __init__(self, interval: float) -> None:
        self.interval = interval
        self.subscribers: set[Connection] = set()
        self._task: asyncio.Task[None] | None = None
        self.samples_taken = 0

    def subscribe(self, connection: Connection) -> None:
        self.subscribers.add(connection)
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._run(), name="memory-monitor")

    def unsubscribe(self, connection: Connection) -> None:
        self.subscribers.discard(connection)

    async def _run(self) -> None:
        while self.subscribers:
            self.samples_taken += 1
            frame = encode({"event": "server_response", "data": memory_sample()})
            wire_frame = text_frame(frame)  # once for every watcher
            for connection in list(self.subscribers):
                connection.send(frame, wire_frame)
            await asyncio.sleep(self.interval)

    async def stop(self) -> None:
        self.subscribers.clear()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(BaseException):
                await self._task
