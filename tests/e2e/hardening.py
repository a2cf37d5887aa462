"""What the hardening suites share (tests/e2e/test_hardening_*.py, the second attack run
replayed): a production-mode service (2 Hypercorn workers, MariaDB, Redis, the scheduler on)
per test module (the fixtures `hardening_env` and `hardening_server` of tests/e2e/conftest.py),
and readers of its metrics and frames."""

from __future__ import annotations

import asyncio
import json

import httpx

from tests.e2e.server import RunningServer

ADMIN = ("root", "hardening-admin-password")
PRINT_TEST = "app.scheduler.jobs:print_test"


def add_job(server: RunningServer, **definition) -> httpx.Response:
    return httpx.post(f"{server.base_url}/scheduler/jobs", json=definition, auth=ADMIN, timeout=10)


def loop_lag_p99(
    server: RunningServer, before: dict[float, float], metric: str = "event_loop_lag_seconds"
) -> float:
    """The p99 bucket bound of `metric` over what was observed since `before`."""
    after = lag_buckets(server, metric)
    deltas = {bound: after[bound] - before.get(bound, 0.0) for bound in sorted(after)}
    total = deltas[float("inf")]
    return next(bound for bound, count in deltas.items() if count >= 0.99 * total)


def lag_buckets(
    server: RunningServer, metric: str = "event_loop_lag_seconds"
) -> dict[float, float]:
    buckets: dict[float, float] = {}
    for line in httpx.get(f"{server.base_url}/metrics", timeout=5).text.splitlines():
        if line.startswith(f"{metric}_bucket{{"):
            bound = line.split('le="', 1)[1].split('"', 1)[0]
            buckets[float("inf") if bound == "+Inf" else float(bound)] = float(line.split()[-1])
    return buckets


async def next_event(ws, name: str) -> dict:
    """The next frame of event `name` on websocket `ws` (5 s for each frame)."""
    while True:
        frame = json.loads(await asyncio.wait_for(ws.recv(), 5))
        if frame.get("event") == name:
            return frame
