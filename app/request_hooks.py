"""The service's own per-request hooks on the way in and out, as one ASGI middleware.

For every HTTP request the app answers (those admission lets in; app.admission answers the
rest itself, uncounted by design), `RequestHooks`:
- starts its database deadline: all its database work must end within `DB_TIMEOUT`
  (app.db.start_database_deadline);
- gives it its request id (app.request_log.request_id_for), kept in the scope
  (`current_request_id()` in the app) and echoed in `X-Request-ID`;
- adds the security headers the response lacks (app.security_headers);
- counts and times the answer (`http_requests_total`, `http_request_duration_seconds`: from
  here to the end of the answer) under its URL rule, which app.http_connection records in the
  scope (`ROUTE_SCOPE_KEY`);
- writes its access log line (app.request_log.AccessLog).

Why one middleware and not Quart's `before_request`/`after_request` hooks: these are the
service's costs on top of the framework on every request, and the hooks did the same work
through werkzeug's `Headers` and the request-context proxies (`g`, `request`): 84 us of a
request's CPU in-process against 20 us here (bench/, `python -m bench --suite peers`; each
hook's share in docs/performance.md). The header pairs are encoded once per worker. Websockets
pass straight through, without a coroutine of this middleware's own (app/admission/ says why).
"""

from __future__ import annotations

import time
from collections.abc import Awaitable
from typing import Any

from app.credentials.rate_limit import RATE_LIMIT_SCOPE_KEY
from app.db import start_database_deadline
from app.metrics import RequestMetrics
from app.request_log import REQUEST_ID_SCOPE_KEY, AccessLog, request_id_for
from app.security_headers import NONCE_SCOPE_KEY, SecurityHeaders

ROUTE_SCOPE_KEY = "app.route"  # the matched URL rule, e.g. `/api/v1/user/<user_id>`
REQUEST_ID_HEADER = b"x-request-id"

Scope = dict[str, Any]
Message = dict[str, Any]


class RequestHooks:
    """ASGI middleware applying the hooks above to `app`'s HTTP requests.

    Arguments:
        app: the ASGI app (Quart's).
        security_headers: the worker's encoded security headers.
        metrics: the request counters and timers.
        access_log: the access log writer.
        database_seconds: the request's database deadline, in seconds (`DB_TIMEOUT`).
    """

    def __init__(
        self,
        app: Any,
        *,
        security_headers: SecurityHeaders,
        metrics: RequestMetrics,
        access_log: AccessLog,
        database_seconds: float,
    ) -> None:
        self.app = app
        self.database_seconds = database_seconds
        self.security_headers = security_headers
        self.metrics = metrics
        self.access_log = access_log

    def __call__(self, scope: Scope, receive: Any, send: Any) -> Awaitable[None]:
        if scope["type"] != "http":
            passed: Awaitable[None] = self.app(scope, receive, send)
            return passed
        return self._handle(scope, receive, send)

    async def _handle(self, scope: Scope, receive: Any, send: Any) -> None:
        started = time.perf_counter()
        start_database_deadline(self.database_seconds)
        request_id = scope[REQUEST_ID_SCOPE_KEY] = request_id_for(scope)
        status = 0

        async def send_with_headers(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                headers = self.security_headers.added_to(
                    message["headers"], scope.get(NONCE_SCOPE_KEY)
                )
                headers.append((REQUEST_ID_HEADER, request_id.encode()))
                limits = scope.get(RATE_LIMIT_SCOPE_KEY)  # set where credentials were checked
                if limits is not None:
                    headers.extend(limits.headers())
                message["headers"] = headers
            await send(message)

        try:
            await self.app(scope, receive, send_with_headers)
        finally:
            if status:  # answered (a client that left before its answer has no line)
                seconds = time.perf_counter() - started
                method = scope["method"]
                self.metrics.observe(scope.get(ROUTE_SCOPE_KEY), method, status, seconds)
                client = scope.get("client")
                self.access_log.write(
                    method,
                    scope["path"],
                    status,
                    seconds,
                    request_id,
                    client[0] if client else None,
                )
