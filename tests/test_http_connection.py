"""app.http_connection.LeanHTTPConnection: Quart's HTTP connection with the handler in the
server's task. Driven at the ASGI interface with the messages a server sends (the whole suite
runs it under Hypercorn), each behaviour Quart's own connection class has."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from quart import Quart, Response, request

from app.client_gone import client_gone_of, offer
from app.factory import create_app
from app.http_connection import LeanHTTPConnection, RequestHeaders, _has_body
from app.request_hooks import ROUTE_SCOPE_KEY
from app.settings import Settings


class Client:
    """The server's side of one request: `receive` hands out `incoming` messages, then waits
    for `disconnect()`; `send` records what the app sent (and, with `stall_body`, never
    returns from a body's send, as a server whose client stopped reading)."""

    def __init__(self, *incoming: dict[str, Any], stall_body: bool = False) -> None:
        self.incoming = list(incoming)
        self.left = asyncio.Event()
        self.sent: list[dict[str, Any]] = []
        self.stall_body = stall_body
        self.stalled = asyncio.Event()

    async def receive(self) -> dict[str, Any]:
        if self.incoming:
            return self.incoming.pop(0)
        await self.left.wait()
        return {"type": "http.disconnect"}

    async def send(self, message: dict[str, Any]) -> None:
        self.sent.append(message)
        if self.stall_body and message["type"] == "http.response.body":
            self.stalled.set()
            await asyncio.Event().wait()

    @property
    def status(self) -> int | None:
        starts = [m for m in self.sent if m["type"] == "http.response.start"]
        return starts[0]["status"] if starts else None

    @property
    def body(self) -> bytes:
        return b"".join(m.get("body", b"") for m in self.sent if m["type"] == "http.response.body")


def scope(method: str, path: str) -> dict[str, Any]:
    return {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": method,
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "root_path": "",
        "headers": [(b"host", b"testserver")],
        "client": ("127.0.0.1", 50000),
        "server": ("127.0.0.1", 8000),
        "extensions": {},
    }


@pytest.fixture
def events() -> dict[str, asyncio.Event]:
    return {"started": asyncio.Event(), "cancelled": asyncio.Event()}


@pytest.fixture
def app(events: dict[str, asyncio.Event]) -> Quart:
    app = Quart(__name__)
    app.asgi_http_class = LeanHTTPConnection

    @app.post("/echo")
    async def echo() -> bytes:
        return await request.get_data()

    @app.get("/wait")
    async def wait() -> str:
        events["started"].set()
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            events["cancelled"].set()
            raise
        return "never"

    @app.get("/timeout")
    async def short_timeout() -> Response:
        response = Response("body")
        response.timeout = 0.1
        return response

    return app


def call(app: Quart, client: Client, method: str, path: str) -> asyncio.Task[None]:
    return asyncio.create_task(app(scope(method, path), client.receive, client.send))  # type: ignore[arg-type]


EMPTY_BODY = {"type": "http.request", "body": b"", "more_body": False}


async def waiting_handler(
    app: Quart, events: dict[str, asyncio.Event], client: Client | None = None
) -> tuple[Client, asyncio.Task[None]]:
    """A request to `/wait` whose handler has started (and waits until cancelled)."""
    client = client or Client(EMPTY_BODY)
    task = call(app, client, "GET", "/wait")
    await asyncio.wait_for(events["started"].wait(), 10)
    return client, task


async def test_the_app_is_served_by_the_lean_connection() -> None:
    settings = Settings(app_env="testing", secret_key="x" * 32)
    assert create_app(settings).asgi_http_class is LeanHTTPConnection


async def test_a_body_in_several_messages_reaches_the_handler(app: Quart) -> None:
    client = Client(
        {"type": "http.request", "body": b"first ", "more_body": True},
        {"type": "http.request", "body": b"second", "more_body": False},
    )
    await asyncio.wait_for(call(app, client, "POST", "/echo"), 10)
    assert (client.status, client.body) == (200, b"first second")


async def test_a_client_that_leaves_has_its_handler_cancelled(
    app: Quart, events: dict[str, asyncio.Event]
) -> None:
    client, task = await waiting_handler(app, events)
    client.left.set()
    await asyncio.wait_for(task, 10)  # ends normally, as under Quart's own class
    assert events["cancelled"].is_set()
    assert client.status is None


async def test_a_cancellation_from_outside_is_not_swallowed(
    app: Quart, events: dict[str, asyncio.Event]
) -> None:
    _, task = await waiting_handler(app, events)
    task.cancel()  # a server shutting down, the client still there
    with pytest.raises(asyncio.CancelledError):
        await asyncio.wait_for(task, 10)
    assert events["cancelled"].is_set()


async def test_a_response_to_a_client_that_stops_reading_is_abandoned(app: Quart) -> None:
    client = Client(EMPTY_BODY, stall_body=True)
    await asyncio.wait_for(call(app, client, "GET", "/timeout"), 10)  # returns after 0.1 s
    assert client.stalled.is_set()
    assert client.status == 200


async def test_the_client_watcher_ends_with_the_request(app: Quart) -> None:
    before = asyncio.all_tasks()
    client = Client({"type": "http.request", "body": b"x", "more_body": False})
    await asyncio.wait_for(call(app, client, "POST", "/echo"), 10)
    left = asyncio.all_tasks() - before
    if left:  # the watcher, cancelled when the response was sent, ends on its next step
        await asyncio.wait_for(asyncio.gather(*left, return_exceptions=True), 10)
    assert all(task.done() for task in left)
    assert client.body == b"x"


async def test_an_error_of_the_server_s_receive_reaches_the_server(
    app: Quart, events: dict[str, asyncio.Event]
) -> None:
    class BrokenReceive(Client):
        async def receive(self) -> dict[str, Any]:
            if self.incoming:
                return self.incoming.pop(0)
            await self.left.wait()
            raise RuntimeError("the server's receive failed")

    client, task = await waiting_handler(app, events, BrokenReceive(EMPTY_BODY))
    client.left.set()
    with pytest.raises(RuntimeError, match="receive failed"):
        await asyncio.wait_for(task, 10)
    assert events["cancelled"].is_set()


async def test_the_request_has_werkzeug_s_header_answers_without_its_exceptions(
    app: Quart,
) -> None:
    seen: dict[str, Any] = {}

    @app.get("/headers")
    async def headers() -> str:
        got = request.headers
        seen.update(
            kind=type(got),
            absent=("Authorization" in got, got.get("Authorization"), got.get("X", "d")),
            present=("x-custom" in got, got.get("X-CUSTOM"), got.get("X-Number", type=int)),
            unconvertible=got.get("X-Custom", -1, type=int),
            length=request.content_length,
            repeated=got.getlist("X-Custom"),
        )
        return "ok"

    client = Client(EMPTY_BODY)
    request_scope = scope("GET", "/headers")
    request_scope["headers"] += [(b"x-custom", b"a"), (b"x-custom", b"b"), (b"x-number", b"7")]
    await asyncio.wait_for(app(request_scope, client.receive, client.send), 10)  # type: ignore[arg-type]
    assert client.status == 200
    assert seen["kind"] is RequestHeaders
    assert seen["absent"] == (False, None, "d")
    assert seen["present"] == (True, "a", 7)
    assert seen["unconvertible"] == -1
    assert seen["length"] is None
    assert seen["repeated"] == ["a", "b"]


async def test_the_route_of_a_request_is_recorded_in_its_scope(app: Quart) -> None:
    client = Client({"type": "http.request", "body": b"x", "more_body": False})
    request_scope = scope("POST", "/echo")
    await asyncio.wait_for(app(request_scope, client.receive, client.send), 10)  # type: ignore[arg-type]
    assert request_scope[ROUTE_SCOPE_KEY] == "/echo"
    unmatched = scope("GET", "/nowhere")
    await asyncio.wait_for(app(unmatched, Client(EMPTY_BODY).receive, client.send), 10)  # type: ignore[arg-type]
    assert ROUTE_SCOPE_KEY not in unmatched


# The `app.client_gone` extension (app.client_gone): a server that offers it tells the app
# itself that the client left; a request without a body then has no watcher task.


class ToldClient(Client):
    """A client whose server offers `app.client_gone`; `receive` counts its calls."""

    def __init__(self, *incoming: dict[str, Any]) -> None:
        super().__init__(*incoming)
        self.receives = 0

    async def receive(self) -> dict[str, Any]:
        self.receives += 1
        return await super().receive()


def told_scope(method: str, path: str, *headers: tuple[bytes, bytes]) -> dict[str, Any]:
    request_scope = scope(method, path)
    request_scope["headers"] += list(headers)
    offer(request_scope)
    return request_scope


async def test_a_bodiless_request_told_of_leaving_has_no_watcher(
    app: Quart, events: dict[str, asyncio.Event]
) -> None:
    client = ToldClient(EMPTY_BODY)
    request_scope = told_scope("GET", "/wait")
    before = asyncio.all_tasks()
    task = asyncio.create_task(app(request_scope, client.receive, client.send))  # type: ignore[arg-type]
    await asyncio.wait_for(events["started"].wait(), 10)
    assert asyncio.all_tasks() - before == {task}  # the handler's task alone
    assert client.receives == 0
    client_gone = client_gone_of(request_scope)
    assert client_gone is not None
    client_gone.notify()  # the server: the client is gone
    await asyncio.wait_for(task, 10)  # ends normally, as with the watcher
    assert events["cancelled"].is_set()
    assert client.status is None


async def test_a_request_told_of_leaving_is_answered_and_a_late_call_changes_nothing(
    app: Quart,
) -> None:
    client = ToldClient(EMPTY_BODY)
    request_scope = told_scope("GET", "/timeout")
    await asyncio.wait_for(app(request_scope, client.receive, client.send), 10)  # type: ignore[arg-type]
    assert (client.status, client.body) == (200, b"body")
    client_gone = client_gone_of(request_scope)
    assert client_gone is not None
    client_gone.notify()  # the connection lost after the answer: nothing to stop
    assert client_gone.gone and (client.status, client.body) == (200, b"body")


async def test_a_request_whose_client_left_before_the_app_got_it_is_not_handled(
    app: Quart, events: dict[str, asyncio.Event]
) -> None:
    """Gone while the request waited (admission's queue): the handler never starts, as the
    watcher cancelled it at its first step when `receive()` gave `http.disconnect` at once."""
    client = ToldClient(EMPTY_BODY)
    request_scope = told_scope("GET", "/wait")
    client_gone = client_gone_of(request_scope)
    assert client_gone is not None
    client_gone.notify()
    await asyncio.wait_for(app(request_scope, client.receive, client.send), 10)  # type: ignore[arg-type]
    assert not events["started"].is_set()
    assert client.sent == []


async def test_an_outside_cancellation_of_a_request_told_of_leaving_is_not_swallowed(
    app: Quart, events: dict[str, asyncio.Event]
) -> None:
    client = ToldClient(EMPTY_BODY)
    task = asyncio.create_task(app(told_scope("GET", "/wait"), client.receive, client.send))  # type: ignore[arg-type]
    await asyncio.wait_for(events["started"].wait(), 10)
    task.cancel()  # a server shutting down, the client still there
    with pytest.raises(asyncio.CancelledError):
        await asyncio.wait_for(task, 10)
    assert events["cancelled"].is_set()


@pytest.mark.parametrize(
    "headers",
    [[(b"content-length", b"1")], [(b"transfer-encoding", b"chunked")]],
    ids=["content-length", "chunked"],
)
async def test_a_request_with_a_body_is_watched_even_when_told_of_leaving(
    app: Quart, headers: list[tuple[bytes, bytes]]
) -> None:
    client = ToldClient({"type": "http.request", "body": b"x", "more_body": False})
    request_scope = told_scope("POST", "/echo", *headers)
    await asyncio.wait_for(app(request_scope, client.receive, client.send), 10)  # type: ignore[arg-type]
    assert (client.status, client.body) == (200, b"x")
    assert client.receives >= 1  # the body came through the watcher


@pytest.mark.parametrize(
    ("headers", "has_body"),
    [
        ([], False),
        ([("Content-Length", "0")], False),
        ([("Content-Length", " 0 ")], False),
        ([("Content-Length", "12")], True),
        ([("Transfer-Encoding", "chunked")], True),
        ([("Content-Length", "0"), ("Transfer-Encoding", "chunked")], True),
    ],
)
def test_a_request_has_a_body_as_rfc_9112_frames_it(
    headers: list[tuple[str, str]], has_body: bool
) -> None:
    assert _has_body(RequestHeaders(headers)) is has_body


async def test_a_request_told_of_leaving_behind_a_scope_copying_proxy_fix_is_still_told(
    app: Quart, events: dict[str, asyncio.Event]
) -> None:
    """Hypercorn's ProxyFixMiddleware (FORWARDED_ALLOW_HOPS) deep-copies the scope: the app
    must still append to the server's own list."""
    from hypercorn.middleware import ProxyFixMiddleware

    proxied = ProxyFixMiddleware(app, mode="legacy", trusted_hops=1)
    client = ToldClient(EMPTY_BODY)
    request_scope = told_scope("GET", "/wait", (b"x-forwarded-for", b"203.0.113.7"))
    task = asyncio.create_task(proxied(request_scope, client.receive, client.send))  # type: ignore[arg-type]
    await asyncio.wait_for(events["started"].wait(), 10)
    client_gone = client_gone_of(request_scope)
    assert client_gone is not None
    client_gone.notify()  # the server's own object: the app registered through the copy
    await asyncio.wait_for(task, 10)
    assert events["cancelled"].is_set()
