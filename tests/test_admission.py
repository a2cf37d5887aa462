"""Admission control (app/admission/), as an ASGI middleware around small ASGI apps: bodies
are read before a request counts as work (bounded in time, size and per client address), at
most `limit` requests run at once and the rest wait in arrival order, a wait past the queue's
bounds is a fast 503 with Retry-After, and the slot is given back when the response starts.
tests/e2e/test_concurrency.py shows the same on a real server with raw sockets."""

from __future__ import annotations

import asyncio
import json

import pytest

from app.admission import Admission
from app.metrics import (
    HTTP_CLIENT_REFUSED,
    HTTP_CONCURRENCY_LIMIT,
    HTTP_REQUESTS_SHED,
    HTTP_REQUESTS_WAITING,
)
from tests.waiting import eventually


def now(condition):
    """`eventually` takes an async check."""

    async def check() -> bool:
        return condition()

    return check


class Gate:
    """An ASGI app whose requests stay inside until `opened` is set, then answer 200 with the
    body they received; records who is inside."""

    def __init__(self) -> None:
        self.opened = asyncio.Event()
        self.inside: list[str] = []
        self.most_inside = 0
        self.order: list[str] = []
        self.bodies: dict[str, bytes] = {}

    async def __call__(self, scope, receive, send) -> None:
        name = scope["path"]
        self.inside.append(name)
        self.order.append(name)
        self.most_inside = max(self.most_inside, len(self.inside))
        if scope["type"] == "http" and scope.get("method") == "POST":
            message = await receive()
            self.bodies[name] = message["body"]
            assert message["more_body"] is False  # the whole body, in one message
        await self.opened.wait()
        self.inside.remove(name)
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})


def http(path: str, *, method: str = "GET", headers=(), client: str = "10.0.0.1") -> dict:
    return {
        "type": "http",
        "path": path,
        "method": method,
        "headers": list(headers),
        "client": (client, 40000),
    }


async def no_body() -> dict:
    return {"type": "http.request", "body": b"", "more_body": False}


class Recorder:
    """An ASGI `send` that keeps what the middleware or the app sent."""

    def __init__(self) -> None:
        self.messages: list[dict] = []

    async def __call__(self, message: dict) -> None:
        self.messages.append(message)

    @property
    def status(self) -> int | None:
        starts = [m for m in self.messages if m["type"] == "http.response.start"]
        return starts[0]["status"] if starts else None

    @property
    def headers(self) -> dict[bytes, bytes]:
        start = next(m for m in self.messages if m["type"] == "http.response.start")
        return dict(start["headers"])

    def json(self) -> dict:
        return json.loads(b"".join(m.get("body", b"") for m in self.messages[1:]))


class Trickle:
    """A client's body arriving piece by piece: `feed(chunk, more)` hands the next message to
    the server's `receive`."""

    def __init__(self) -> None:
        self.messages: asyncio.Queue[dict] = asyncio.Queue()

    def feed(self, chunk: bytes, more: bool = True) -> None:
        self.messages.put_nowait({"type": "http.request", "body": chunk, "more_body": more})

    async def receive(self) -> dict:
        return await self.messages.get()


def admission(app, **options) -> Admission:
    settings = {
        "limit": 2,
        "queue_timeout": 5.0,
        "queue_max": 100,
        "body_timeout": 5.0,
        "client_max_bodies": 4,
        "max_body_bytes": 1024,
    }
    return Admission(app, **{**settings, **options})


def waiting() -> float:
    return HTTP_REQUESTS_WAITING._value.get()


def shed(reason: str) -> float:
    return HTTP_REQUESTS_SHED.labels(reason)._value.get()


def refused(reason: str) -> float:
    return HTTP_CLIENT_REFUSED.labels(reason)._value.get()


async def test_requests_past_the_limit_wait_their_turn_in_order() -> None:
    gate = Gate()
    middleware = admission(gate, limit=2)
    assert HTTP_CONCURRENCY_LIMIT._value.get() == 2
    before = waiting()
    requests = [
        asyncio.create_task(middleware(http(f"/r{i}"), no_body, Recorder())) for i in range(5)
    ]
    await eventually(now(lambda: len(gate.inside) == 2 and waiting() - before == 3))
    # The probes and websockets pass while the API waits.
    probe = asyncio.create_task(middleware(http("/healthz"), no_body, Recorder()))
    socket = asyncio.create_task(
        middleware({"type": "websocket", "path": "/ws/chat"}, no_body, Recorder())
    )
    await eventually(now(lambda: {"/healthz", "/ws/chat"} <= set(gate.inside)))
    gate.opened.set()
    await asyncio.gather(*requests, probe, socket)
    assert gate.most_inside == 4  # two requests, the probe and the websocket
    assert [name for name in gate.order if name.startswith("/r")] == [f"/r{i}" for i in range(5)]
    assert waiting() == before


async def test_zero_means_no_limit() -> None:
    gate = Gate()
    middleware = admission(gate, limit=0)
    requests = [
        asyncio.create_task(middleware(http(f"/r{i}"), no_body, Recorder())) for i in range(20)
    ]
    await eventually(now(lambda: len(gate.inside) == 20))
    gate.opened.set()
    await asyncio.gather(*requests)


async def test_the_slot_is_given_back_when_the_response_starts() -> None:
    """A response written to a slow reader holds no slot: the next request runs meanwhile."""
    reader_reads = asyncio.Event()
    order: list[str] = []

    async def app(scope, receive, send) -> None:
        order.append(scope["path"])
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"x"})

    async def slow_reader(message: dict) -> None:
        if message["type"] == "http.response.body":
            await reader_reads.wait()  # the client does not read: the write waits

    middleware = admission(app, limit=1)
    writing = asyncio.create_task(middleware(http("/big"), no_body, slow_reader))
    await eventually(now(lambda: order == ["/big"]))
    second = Recorder()
    await asyncio.wait_for(middleware(http("/next"), no_body, second), 2)
    assert second.status == 200 and not writing.done()
    reader_reads.set()
    await writing


async def test_a_wait_past_the_queue_timeout_is_a_fast_503_with_retry_after() -> None:
    gate = Gate()
    middleware = admission(gate, limit=1, queue_timeout=0.2)
    held = asyncio.create_task(middleware(http("/held"), no_body, Recorder()))
    await eventually(now(lambda: gate.inside == ["/held"]))
    before = shed("queue_timeout")
    answer = Recorder()
    started = asyncio.get_running_loop().time()
    await asyncio.wait_for(middleware(http("/api/v1/user"), no_body, answer), 2)
    waited = asyncio.get_running_loop().time() - started
    assert answer.status == 503 and answer.headers[b"retry-after"] == b"1"
    assert 0.2 <= waited < 0.2 + 0.5
    assert answer.json() == {
        "code": 503,
        "msg": "the service is busy; try again shortly",
        "request": "GET /api/v1/user",
        "status": "failed",
    }
    assert shed("queue_timeout") == before + 1
    gate.opened.set()
    await held


async def test_a_full_queue_refuses_at_once_and_the_scheduler_api_keeps_its_shape() -> None:
    gate = Gate()
    middleware = admission(gate, limit=1, queue_max=1)
    held = asyncio.create_task(middleware(http("/held"), no_body, Recorder()))
    await eventually(now(lambda: gate.inside == ["/held"]))
    queued = asyncio.create_task(middleware(http("/queued"), no_body, Recorder()))
    await eventually(now(lambda: middleware.queue.waiting == 1))
    before = shed("queue_full")
    answer = Recorder()
    await asyncio.wait_for(middleware(http("/scheduler/jobs"), no_body, answer), 1)
    assert answer.status == 503 and answer.headers[b"retry-after"] == b"1"
    assert answer.json() == {"error_message": "the service is busy; try again shortly"}
    assert shed("queue_full") == before + 1
    gate.opened.set()
    await asyncio.gather(held, queued)
    assert gate.order == ["/held", "/queued"]


async def test_a_cancelled_waiter_handed_a_slot_passes_it_on() -> None:
    gate = Gate()
    middleware = admission(gate, limit=1)
    held = asyncio.create_task(middleware(http("/held"), no_body, Recorder()))
    await eventually(now(lambda: gate.inside == ["/held"]))
    gone = asyncio.create_task(middleware(http("/gone"), no_body, Recorder()))
    after = asyncio.create_task(middleware(http("/after"), no_body, Recorder()))
    await eventually(now(lambda: middleware.queue.waiting == 2))
    gone.cancel()
    gate.opened.set()
    await asyncio.gather(held, after)
    assert gate.order == ["/held", "/after"]
    assert middleware.queue.in_flight == 0 and middleware.queue.waiting == 0


POST_JSON = [(b"content-type", b"application/json"), (b"content-length", b"11")]


async def test_a_body_is_read_before_the_request_takes_a_slot() -> None:
    """Uploads trickling in hold no slot: with one slot and two slow uploads, GETs run."""
    gate = Gate()
    gate.opened.set()
    middleware = admission(gate, limit=1)
    uploads = [Trickle(), Trickle()]
    posting = [
        asyncio.create_task(
            middleware(http(f"/up{i}", method="POST", headers=POST_JSON), t.receive, Recorder())
        )
        for i, t in enumerate(uploads)
    ]
    for trickle in uploads:
        trickle.feed(b'{"a"')
    for number in range(3):
        answer = Recorder()
        await asyncio.wait_for(middleware(http(f"/get{number}"), no_body, answer), 1)
        assert answer.status == 200
    for trickle in uploads:
        trickle.feed(b':"bcd"}', more=False)
    await asyncio.gather(*posting)
    assert gate.bodies == {"/up0": b'{"a":"bcd"}', "/up1": b'{"a":"bcd"}'}


async def test_a_body_that_does_not_arrive_in_time_is_408_and_closes() -> None:
    gate = Gate()
    middleware = admission(gate, body_timeout=0.2)
    trickle = Trickle()
    trickle.feed(b"{")
    before = refused("body_timeout")
    answer = Recorder()
    await asyncio.wait_for(
        middleware(http("/api/v1/tag", method="POST", headers=POST_JSON), trickle.receive, answer),
        2,
    )
    assert answer.status == 408 and answer.headers[b"connection"] == b"close"
    assert "did not arrive within 0.2 s" in answer.json()["msg"]
    assert refused("body_timeout") == before + 1
    assert gate.order == []  # the app never saw it


async def test_one_address_may_send_only_so_many_bodies_at_once() -> None:
    gate = Gate()
    gate.opened.set()
    middleware = admission(gate, client_max_bodies=2)
    trickles = [Trickle() for _ in range(2)]
    arriving = [
        asyncio.create_task(
            middleware(http(f"/up{i}", method="POST", headers=POST_JSON), t.receive, Recorder())
        )
        for i, t in enumerate(trickles)
    ]
    await eventually(now(lambda: middleware.bodies.arriving.get("10.0.0.1") == 2))
    before = refused("client_bodies")
    third = Recorder()
    await middleware(http("/up2", method="POST", headers=POST_JSON), Trickle().receive, third)
    assert third.status == 429 and third.headers[b"connection"] == b"close"
    assert third.headers[b"retry-after"] == b"1"
    assert refused("client_bodies") == before + 1
    # Another address is not held to this one's count.
    other = Trickle()
    other.feed(b'{"a":"bcd"}', more=False)
    elsewhere = Recorder()
    request = http("/up3", method="POST", headers=POST_JSON, client="10.0.0.2")
    await middleware(request, other.receive, elsewhere)
    assert elsewhere.status == 200
    for trickle in trickles:
        trickle.feed(b'{"a":"bcd"}', more=False)
    await asyncio.gather(*arriving)
    assert middleware.bodies.arriving == {}


@pytest.mark.parametrize("declared", [True, False])
async def test_a_body_over_the_limit_is_413_whether_declared_or_streamed(declared) -> None:
    gate = Gate()
    middleware = admission(gate, max_body_bytes=16)
    headers = [(b"content-length", b"17")] if declared else [(b"transfer-encoding", b"chunked")]
    trickle = Trickle()
    trickle.feed(b"x" * 10)
    trickle.feed(b"x" * 7, more=False)
    answer = Recorder()
    await middleware(http("/params/body", method="POST", headers=headers), trickle.receive, answer)
    assert answer.status == 413 and answer.headers[b"connection"] == b"close"
    assert answer.json()["msg"] == "the request body is larger than 16 bytes"
    assert gate.order == []


async def test_after_the_body_the_app_still_hears_the_client_leave() -> None:
    heard: list[dict] = []

    async def app(scope, receive, send) -> None:
        heard.append(await receive())
        heard.append(await receive())

    trickle = Trickle()
    trickle.feed(b'{"a":"bcd"}', more=False)
    trickle.messages.put_nowait({"type": "http.disconnect"})
    await admission(app)(http("/x", method="POST", headers=POST_JSON), trickle.receive, Recorder())
    assert heard == [
        {"type": "http.request", "body": b'{"a":"bcd"}', "more_body": False},
        {"type": "http.disconnect"},
    ]
