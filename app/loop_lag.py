"""Event-loop lag: how late a worker's loop runs a callback that was due, as a metric.

A probe sleeps `interval` seconds and measures how much later than asked it woke up; the
excess is time the loop spent on other callbacks without yielding (a blocking call, a long
CPU-bound step). Observed into `event_loop_lag_seconds` (app/metrics.py) for every wake-up.
"""

from __future__ import annotations

import asyncio
import contextlib

from app.metrics import EVENT_LOOP_LAG

PROBE_INTERVAL_SECONDS = 0.1


class LoopLagProbe:
    """Measures this worker's event-loop lag every `interval` seconds while started."""

    def __init__(self, interval: float = PROBE_INTERVAL_SECONDS) -> None:
        self.interval = interval
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._probe(), name="loop-lag-probe")

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _probe(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            asked = loop.time()
            await asyncio.sleep(self.interval)
            EVENT_LOOP_LAG.observe(max(0.0, loop.time() - asked - self.interval))
