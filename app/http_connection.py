"""Quart's ASGI HTTP connection, with two fewer tasks per request (`app.asgi_http_class`).

Quart 0.20-0.22 (`quart.asgi.ASGIHTTPConnection`) runs each request as three tasks besides the
server's own: one feeds the body and watches for `http.disconnect`, one runs the handler (the
two joined by `asyncio.wait`, the loser cancelled and awaited), and `asyncio.wait_for` wraps
the response's send in a third. Here the handler runs in the server's task, the watcher is the
one task left, and the send is bounded without a task (app.deadlines): 7% fewer instructions per
`GET /api/v1/user/<id>` (callgrind, docs/performance.md). What a request sees is Quart's:

- its body arrives through the watcher (`Request.get_data` waits on it);
- a client that disconnects has its handler cancelled (the server's `http.disconnect`);
- the response's send is bounded by `RESPONSE_TIMEOUT` (or the response's own `timeout`), then
  abandoned: the only bound on a client that stops reading.

A request without a body (no Content-Length, or 0, and no Transfer-Encoding: RFC 9112 §6.3)
whose server offers the `app.client_gone` extension (app.client_gone: the service's own HTTP/1
protocols) has no watcher at all: its body is known empty, and the server itself calls back when
its client leaves. That task cost 55 us of a `GET` under load on Hypercorn, 29 on Uvicorn.

A response whose body is in memory is sent as two messages, not three. It also records the
request's URL rule in its ASGI scope, for app.request_hooks' metrics, and gives the request
`RequestHeaders`.
"""

from __future__ import annotations

import asyncio
import contextlib
from functools import partial
from typing import Any, cast
from urllib.parse import urlparse

from hypercorn.typing import ASGIReceiveCallable, ASGISendCallable
from quart.asgi import ASGIHTTPConnection, _normalise_path
from quart.debug import traceback_response
from quart.utils import encode_headers
from quart.wrappers import Request, Response
from quart.wrappers.response import DataBody
from werkzeug.datastructures import Headers

from app.client_gone import ClientGone, client_gone_of
from app.deadlines import within
from app.request_hooks import ROUTE_SCOPE_KEY


class RequestHeaders(Headers):
    """werkzeug's `Headers` whose lookups of a header the request lacks return at once:
    werkzeug's `get` and `in` raise and catch `BadRequestKeyError` for it (an exception built
    per lookup; a request without `Authorization`, `Content-Length` or `Transfer-Encoding`
    made three). Same answers, through the public `getlist`."""

    def __contains__(self, key: object) -> bool:
        return isinstance(key, str) and bool(self.getlist(key))

    def get(self, key: str, default: Any = None, type: Any = None) -> Any:  # type: ignore[override]  # werkzeug's overloads, one body
        found = self.getlist(key)
        if not found:
            return default
        if type is None:
            return found[0]
        try:
            return type(found[0])
        except ValueError:  # as werkzeug's own `get`
            return default


def _has_body(headers: Headers) -> bool:
    """Whether an HTTP/1 request with `headers` has a body (RFC 9112 §6.3: a
    Transfer-Encoding, or a Content-Length other than 0)."""
    if "Transfer-Encoding" in headers:
        return True
    length = headers.get("Content-Length")
    return length is not None and length.strip() != "0"


class LeanHTTPConnection(ASGIHTTPConnection):
    """`quart.asgi.ASGIHTTPConnection` with the handler in the caller's task (module docstring).

    Raises what the handler raises past Quart's error handling (as Quart does), and
    `CancelledError` when the caller's task is cancelled from outside (a server shutting down);
    a cancellation caused by the client's disconnect ends the call normally, as in Quart.
    """

    async def __call__(self, receive: ASGIReceiveCallable, send: ASGISendCallable) -> None:
        request = self._create_request_from_scope(send)
        client_gone = client_gone_of(cast("dict[str, Any]", self.scope))
        if client_gone is not None and not _has_body(request.headers):
            request.body.set_complete()
            await self._handle_told_of_leaving(request, send, client_gone)
            return
        handler = asyncio.current_task()
        assert handler is not None  # an ASGI app is always called from a task
        left = False
        watcher_error: BaseException | None = None

        async def watch_client() -> None:
            nonlocal left, watcher_error
            try:
                await self.handle_messages(request, receive)
            except Exception as error:  # raised in the handler's task, as Quart's wait does
                watcher_error = error
            left = True
            handler.cancel()

        watcher = asyncio.ensure_future(watch_client())
        try:
            await self.handle_request(request, send)
        except asyncio.CancelledError:
            # Ours (the client left) unless someone else cancelled the task too.
            if left and handler.uncancel() == 0:
                if watcher_error is not None:
                    raise watcher_error from None
                return
            raise
        finally:
            watcher.cancel()

    async def _handle_told_of_leaving(
        self, request: Request, send: ASGISendCallable, client_gone: ClientGone
    ) -> None:
        # `__call__` without the watcher: the server calls `leave` if the client goes.
        handler = asyncio.current_task()
        assert handler is not None
        left = answered = False

        def leave() -> None:
            nonlocal left
            if not answered:
                left = True
                handler.cancel()

        if not client_gone.on_gone(leave):
            return  # gone while the request waited (admission's queue): nobody to answer
        try:
            await self.handle_request(request, send)
        except asyncio.CancelledError:
            if left and handler.uncancel() == 0:  # ours, as in `__call__`
                return
            raise
        finally:
            answered = True

    def _create_request_from_scope(self, send: ASGISendCallable) -> Request:
        # Quart's own (quart.asgi, 0.20-0.22), with `RequestHeaders` for werkzeug's `Headers`.
        headers = RequestHeaders()
        headers["Remote-Addr"] = (self.scope.get("client") or ["<local>"])[0]
        for name, value in self.scope["headers"]:
            headers.add(name.decode("latin1").title(), value.decode("latin1"))
        if self.scope["http_version"] < "1.1":
            headers.setdefault("Host", self.app.config["SERVER_NAME"] or "")
        path = self.scope["path"]
        path = path if path[0] == "/" else urlparse(path).path
        root_path = self.scope.get("root_path", "")
        if root_path != "":
            path = _normalise_path(path, root_path)
        return self.app.request_class(
            self.scope["method"],
            self.scope["scheme"],
            path,
            self.scope["query_string"],
            headers,
            root_path,
            self.scope["http_version"],
            max_content_length=self.app.config["MAX_CONTENT_LENGTH"],
            body_timeout=self.app.config["BODY_TIMEOUT"],
            send_push_promise=partial(self._send_push_promise, send),
            scope=self.scope,
        )

    async def _send_response(self, send: ASGISendCallable, response: Any) -> None:
        # A response whose body is all in memory (a Quart `Response` with a `DataBody`: every
        # JSON answer) goes out as its start and one body message; Quart sends the body, then
        # an empty last one: a third message through every middleware and the server.
        body = getattr(response, "response", None)
        if isinstance(response, Response) and type(body) is DataBody:
            await send(
                {
                    "type": "http.response.start",
                    "status": response.status_code,
                    "headers": encode_headers(response.headers),
                }
            )
            await send(
                {
                    "type": "http.response.body",
                    "body": body.data[body.begin : body.end],
                    "more_body": False,
                }
            )
            return
        await super()._send_response(send, response)

    async def handle_request(self, request: Request, send: ASGISendCallable) -> None:
        try:
            response = await self.app.handle_request(request)
        except Exception as error:
            # quart.asgi._handle_exception: the traceback page in debug and testing, else raise.
            if not (self.app.debug or self.app.testing):
                raise
            response = await traceback_response(error)
        finally:
            rule = request.url_rule
            if rule is not None:  # the metrics' route label (app.request_hooks)
                cast("dict[str, Any]", self.scope)[ROUTE_SCOPE_KEY] = rule.rule
        if isinstance(response, Response) and response.timeout != Ellipsis:
            timeout = cast("float | None", response.timeout)
        else:
            timeout = self.app.config["RESPONSE_TIMEOUT"]
        # Abandoned past its bound (app.deadlines), or at a TimeoutError of its own, as in Quart.
        with contextlib.suppress(TimeoutError):
            await within(timeout, self._send_response(send, response))
