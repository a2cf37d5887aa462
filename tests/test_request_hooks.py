"""app.request_hooks.RequestHooks and its parts: the request id, the security headers, the
metrics and the access log line of every answered HTTP request, at the ASGI interface (the e2e
suites see the same through Hypercorn: tests/e2e/test_security.py, test_metrics.py)."""

from __future__ import annotations

import asyncio
import io
import json
import logging
import os
import subprocess
import sys
from typing import Any

import pytest
from prometheus_client import REGISTRY
from sqlalchemy import text

from app.db import Database, DatabaseTimeoutError
from app.metric_files import process_identifier
from app.metrics import RequestMetrics
from app.request_hooks import ROUTE_SCOPE_KEY, RequestHooks
from app.request_log import (
    REQUEST_ID_SCOPE_KEY,
    AccessLog,
    CachedTimeJsonFormatter,
    EscapingFormatter,
    request_id_for,
)
from app.security_headers import NONCE_SCOPE_KEY, SecurityHeaders, page_policy
from app.settings import Settings
from tests.conftest import make_settings
from tests.e2e.server import PROJECT_ROOT

PRODUCTION = Settings(app_env="production", secret_key="x" * 32)


Headers = list[tuple[bytes, bytes]]


@pytest.fixture(autouse=True)
def access_at_info() -> Any:
    """The access logger at INFO, as `configure_logging` sets `app` (tests leave it unset)."""
    access = logging.getLogger("app.access")
    level = access.level
    access.setLevel(logging.INFO)
    yield
    access.setLevel(level)


def http_scope(path: str = "/api/v1/tag", headers: Headers | None = None) -> dict[str, Any]:
    return {
        "type": "http",
        "method": "GET",
        "path": path,
        "headers": headers or [],
        "client": ("192.0.2.7", 4000),
    }


def hooks_around(
    app: Any,
    handler: logging.StreamHandler[Any],
    *,
    json_lines: bool = False,
    metrics: RequestMetrics | None = None,
    database_seconds: float = 5.0,
) -> RequestHooks:
    return RequestHooks(
        app,
        security_headers=SecurityHeaders(PRODUCTION),
        metrics=metrics or RequestMetrics(),
        access_log=AccessLog(handler, json_lines=json_lines),
        database_seconds=database_seconds,
    )


def stream_handler(log_format: str) -> tuple[logging.StreamHandler[Any], io.StringIO]:
    stream = io.StringIO()
    handler: logging.StreamHandler[Any] = logging.StreamHandler(stream)
    handler.setFormatter(
        EscapingFormatter("%(asctime)s %(levelname)s %(name)s [%(process)d] %(message)s")
        if log_format == "text"
        else CachedTimeJsonFormatter("%(asctime)s %(levelname)s %(name)s %(process)d %(message)s")
    )
    return handler, stream


class Answer:
    """A tiny ASGI app: answers `status` with `headers` and records the route like Quart's."""

    def __init__(self, status: int = 200, headers: list[tuple[bytes, bytes]] | None = None) -> None:
        self.status = status
        self.headers = headers or [(b"content-type", b"application/json")]

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        scope[ROUTE_SCOPE_KEY] = "/api/v1/tag"
        await send({"type": "http.response.start", "status": self.status, "headers": self.headers})
        await send({"type": "http.response.body", "body": b"{}"})


async def serve_once(hooks: RequestHooks, scope: dict[str, Any]) -> list[dict[str, Any]]:
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b""}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    await hooks(scope, receive, send)
    return sent


def test_request_ids_are_echoed_when_sane_else_made() -> None:
    assert request_id_for(http_scope(headers=[(b"x-request-id", b"abc-1.2_3")])) == "abc-1.2_3"
    for bad in (b"bad id", b"x" * 65, b"", b"\xff"):
        made = request_id_for(http_scope(headers=[(b"x-request-id", bad)]))
        assert len(made) == 32 and int(made, 16) >= 0
    assert request_id_for(http_scope()) != request_id_for(http_scope())


def test_security_headers_are_added_unless_the_response_has_them() -> None:
    headers = SecurityHeaders(PRODUCTION)
    added = dict(headers.added_to([(b"content-type", b"application/json")], None))
    assert added[b"x-content-type-options"] == b"nosniff"
    assert added[b"x-frame-options"] == b"DENY"
    assert added[b"referrer-policy"] == b"same-origin"
    assert added[b"strict-transport-security"].startswith(b"max-age=31536000")
    assert added[b"content-security-policy"].startswith(b"default-src 'none'")
    page = dict(headers.added_to([(b"content-type", b"text/html; charset=utf-8")], "n0nce"))
    assert page[b"content-security-policy"] == page_policy("n0nce").encode()
    # An HTML response without a nonce (no template asked for one) gets the strict policy.
    plain = dict(headers.added_to([(b"content-type", b"text/html")], None))
    assert plain[b"content-security-policy"].startswith(b"default-src 'none'")
    own = headers.added_to(
        [(b"x-frame-options", b"SAMEORIGIN"), (b"content-security-policy", b"sandbox")], None
    )
    assert own.count((b"x-frame-options", b"SAMEORIGIN")) == 1
    assert [name for name, _ in own].count(b"x-frame-options") == 1
    assert (b"content-security-policy", b"sandbox") in own
    assert [name for name, _ in own].count(b"content-security-policy") == 1
    development = SecurityHeaders(Settings(app_env="development", secret_key="x" * 32))
    assert b"strict-transport-security" not in dict(development.added_to([], None))


@pytest.mark.parametrize("log_format", ["text", "json"])
async def test_an_answered_request_gets_its_id_headers_count_and_one_line(log_format: str) -> None:
    handler, stream = stream_handler(log_format)
    metrics = RequestMetrics()
    hooks = hooks_around(Answer(201), handler, json_lines=log_format == "json", metrics=metrics)
    labels = {"route": "/api/v1/tag", "method": "GET", "status": "201"}
    before = REGISTRY.get_sample_value("http_requests_total", labels) or 0
    scope = http_scope("/api/v1/tag\n", [(b"x-request-id", b"req-1")])
    sent = await serve_once(hooks, scope)
    start = dict(sent[0]["headers"])
    assert start[b"x-request-id"] == b"req-1" and b"x-frame-options" in start
    assert scope[REQUEST_ID_SCOPE_KEY] == "req-1"
    assert REGISTRY.get_sample_value("http_requests_total", labels) == before + 1
    assert stream.getvalue() == ""  # written at the end of the loop turn, with the turn's others
    await asyncio.sleep(0)
    line = stream.getvalue()
    assert line.endswith("\n") and line.count("\n") == 1
    if log_format == "json":
        record = json.loads(line)
        assert record["name"] == "app.access" and record["levelname"] == "INFO"
        assert record["message"].startswith("GET /api/v1/tag\n 201 ")
        assert (record["status"], record["request_id"], record["client"]) == (
            201,
            "req-1",
            "192.0.2.7",
        )
        assert record["process"] == os.getpid()
    else:
        # logging's own layout: `asctime LEVEL name [pid] message`, controls escaped.
        record = logging.makeLogRecord({})
        reference = logging.Formatter().formatTime(record)  # e.g. 2026-12-05 08:08:11,913
        date, clock = line.split(" ", 2)[:2]
        assert (len(date), len(clock)) == (
            len(reference.split(" ")[0]),
            len(reference.split(" ")[1]),
        )
        assert date == reference.split(" ")[0] or clock.startswith("00:00")  # midnight between
        assert f" INFO app.access [{os.getpid()}] GET /api/v1/tag\\x0a 201 " in line
        assert line.rstrip().endswith("id=req-1 client=192.0.2.7")


async def test_one_loop_turn_s_lines_go_out_in_one_write_and_warning_level_silences_them() -> None:
    handler, stream = stream_handler("text")
    writes: list[str] = []
    real_write = stream.write
    stream.write = lambda text: writes.append(text) or real_write(text)  # type: ignore[method-assign]
    log = AccessLog(handler, json_lines=False)
    for number in range(3):
        log.write("GET", f"/{number}", 200, 0.001, "id", "127.0.0.1")
    await asyncio.sleep(0)
    assert len(writes) == 1 and writes[0].count("\n") == 3
    access = logging.getLogger("app.access")
    level = access.level
    access.setLevel(logging.WARNING)
    try:
        log.write("GET", "/quiet", 200, 0.001, "id", None)
        await asyncio.sleep(0)
    finally:
        access.setLevel(level)
    assert "/quiet" not in stream.getvalue()


async def test_a_request_left_unanswered_is_neither_counted_nor_logged() -> None:
    handler, stream = stream_handler("text")

    async def leaves(scope: dict[str, Any], receive: Any, send: Any) -> None:
        raise asyncio.CancelledError  # the client left before any answer

    hooks = hooks_around(leaves, handler)
    with pytest.raises(asyncio.CancelledError):
        await serve_once(hooks, http_scope())
    await asyncio.sleep(0)
    assert stream.getvalue() == ""


async def test_a_request_s_database_work_shares_the_deadline_its_hooks_started() -> None:
    """All of a request's database work must end within one `DB_TIMEOUT` from its start (not
    one each): a read once that time is used up is refused at once, without a connection."""
    database = Database(make_settings("sqlite+aiosqlite:///:memory:"))
    outcomes: list[object] = []

    async def reads(scope: dict[str, Any], receive: Any, send: Any) -> None:
        try:
            await database.read(lambda connection: connection.execute(text("SELECT 1")))
        except DatabaseTimeoutError as error:
            outcomes.append(str(error))
        await Answer(200)(scope, receive, send)

    handler, _ = stream_handler("text")
    try:
        await serve_once(hooks_around(reads, handler, database_seconds=0.0), http_scope())
        await serve_once(hooks_around(reads, handler, database_seconds=5.0), http_scope())
    finally:
        await database.dispose()
    assert outcomes == ["the request's database time is used up"]


async def test_websockets_pass_straight_through() -> None:
    seen: list[dict[str, Any]] = []

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        seen.append(scope)

    handler, _ = stream_handler("text")
    hooks = hooks_around(app, handler)
    scope = {"type": "websocket", "path": "/ws"}
    assert not asyncio.iscoroutinefunction(hooks.__call__)
    await hooks(scope, None, None)
    assert seen == [scope] and REQUEST_ID_SCOPE_KEY not in scope


async def test_a_page_gets_the_policy_of_the_nonce_its_template_asked_for() -> None:
    page = Answer(200, [(b"content-type", b"text/html; charset=utf-8")])

    async def rendering(scope: dict[str, Any], receive: Any, send: Any) -> None:
        scope[NONCE_SCOPE_KEY] = "abc"  # app.security_headers.csp_nonce() in a template
        await page(scope, receive, send)

    handler, _ = stream_handler("text")
    hooks = hooks_around(rendering, handler)
    sent = await serve_once(hooks, http_scope("/login"))
    assert dict(sent[0]["headers"])[b"content-security-policy"] == page_policy("abc").encode()


def test_the_metrics_pid_is_cached_and_renewed_in_a_forked_child() -> None:
    assert process_identifier() == os.getpid()
    probe = (
        "import os\n"
        "from app.metric_files import process_identifier\n"
        "parent = process_identifier()\n"
        "child = os.fork()\n"
        "if child == 0:\n"
        "    os._exit(0 if process_identifier() == os.getpid() != parent else 1)\n"
        "_, status = os.waitpid(child, 0)\n"
        "raise SystemExit(os.waitstatus_to_exitcode(status))\n"
    )
    done = subprocess.run([sys.executable, "-c", probe], cwd=PROJECT_ROOT, timeout=60)
    assert done.returncode == 0
