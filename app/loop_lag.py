"""Event-loop lag: how late a worker's loop runs a callback that was due, as metrics.

A probe sleeps `interval` seconds and measures how much later than asked it woke up; the
excess is time the loop spent on other callbacks without yielding (a blocking call, a long
CPU-bound step), or time the worker waited for a CPU that other processes held. Two histograms
(app/metrics.py), observed at every wake-up:

- `event_loop_lag_seconds`: the whole lag, what the worker's clients wait;
- `event_loop_own_lag_seconds`: the lag less the time the loop's thread spent runnable but
  waiting for a CPU (Linux's per-thread scheduler statistics, `/proc/thread-self/schedstat`,
  its second field): what the worker's own code held the loop, CPU-bound or blocked in a call.
  On a machine loaded by other processes the first rises and the second does not.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

from app.cancellation import BackgroundTask
from app.metrics import EVENT_LOOP_LAG, EVENT_LOOP_OWN_LAG

PROBE_INTERVAL_SECONDS = 0.1
SCHEDSTAT = Path("/proc/thread-self/schedstat")


def cpu_wait_seconds() -> float | None:
    """Seconds the calling thread has spent runnable, waiting for a CPU, since it started;
    None where the kernel does not say (not Linux, or no scheduler statistics)."""
    try:
        return int(SCHEDSTAT.read_text().split()[1]) / 1e9
    except (OSError, IndexError, ValueError):
        return None


class LoopLagProbe(BackgroundTask):
    """Measures this worker's event-loop lag every `interval` seconds while started."""

    name = "loop-lag-probe"

    def __init__(self, interval: float = PROBE_INTERVAL_SECONDS) -> None:
        super().__init__()
        self.interval = interval

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            asked, waited_before = loop.time(), cpu_wait_seconds()
            await asyncio.sleep(self.interval)
            lag, waited_after = max(0.0, loop.time() - asked - self.interval), cpu_wait_seconds()
            EVENT_LOOP_LAG.observe(lag)
            if waited_before is None or waited_after is None:
                EVENT_LOOP_OWN_LAG.observe(lag)
            else:
                EVENT_LOOP_OWN_LAG.observe(max(0.0, lag - (waited_after - waited_before)))
