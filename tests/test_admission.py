"""Admission control (app/admission.py): at most HTTP_CONCURRENCY requests of a worker run at
once, the rest wait in arrival order; websockets and the probes are never held."""

from __future__ import annotations

import asyncio

from app.admission import AdmissionLimit
from app.metrics import HTTP_REQUESTS_WAITING
from tests.waiting import eventually


def now(condition):
    """`eventually` takes an async check."""

    async def check() -> bool:
        return condition()

    return check


class Gate:
    """An ASGI app whose requests stay inside until `opened` is set; records who is inside."""

    def __init__(self) -> None:
        self.opened = asyncio.Event()
        self.inside: list[str] = []
        self.most_inside = 0
        self.order: list[str] = []

    async def __call__(self, scope, receive, send) -> None:
        name = scope["path"]
        self.inside.append(name)
        self.order.append(name)
        self.most_inside = max(self.most_inside, len(self.inside))
        await self.opened.wait()
        self.inside.remove(name)


def http(path: str) -> dict:
    return {"type": "http", "path": path}


async def nothing() -> dict:
    return {}


async def ignore(_message) -> None:
    return None


def waiting() -> float:
    return HTTP_REQUESTS_WAITING._value.get()


async def test_requests_past_the_limit_wait_their_turn_in_order() -> None:
    gate = Gate()
    limit = AdmissionLimit(gate, 2)
    before = waiting()
    requests = [asyncio.create_task(limit(http(f"/r{i}"), nothing, ignore)) for i in range(5)]
    await eventually(now(lambda: len(gate.inside) == 2 and waiting() - before == 3))
    # The probes and websockets pass while the API waits.
    probe = asyncio.create_task(limit(http("/healthz"), nothing, ignore))
    socket = asyncio.create_task(limit({"type": "websocket", "path": "/ws/chat"}, nothing, ignore))
    await eventually(now(lambda: {"/healthz", "/ws/chat"} <= set(gate.inside)))
    gate.opened.set()
    await asyncio.gather(*requests, probe, socket)
    assert gate.most_inside == 4  # two requests, the probe and the websocket
    assert [name for name in gate.order if name.startswith("/r")] == [f"/r{i}" for i in range(5)]
    assert waiting() == before


async def test_zero_means_no_limit() -> None:
    gate = Gate()
    limit = AdmissionLimit(gate, 0)
    requests = [asyncio.create_task(limit(http(f"/r{i}"), nothing, ignore)) for i in range(20)]
    await eventually(now(lambda: len(gate.inside) == 20))
    gate.opened.set()
    await asyncio.gather(*requests)
