"""Quart's ASGI HTTP connection, with two fewer tasks per request (`app.asgi_http_class`).

Quart 0.20-0.22 (`quart.asgi.ASGIHTTPConnection`) runs each request as three tasks besides the
server's own: one feeds the body and watches for `http.disconnect`, one runs the handler (the
two joined by `asyncio.wait`, the loser cancelled and awaited), and `asyncio.wait_for` wraps
the response's send in a third. Here the handler runs in the server's task, the watcher is the
one task left, and `asyncio.timeout` bounds the send without a task: 7% fewer instructions per
`GET /api/v1/user/<id>` (callgrind, docs/performance.md). What a request sees is Quart's:

- its body arrives through the watcher (`Request.get_data` waits on it);
- a client that disconnects has its handler cancelled (the server's `http.disconnect`);
- the response's send is bounded by `RESPONSE_TIMEOUT` (or the response's own `timeout`), then
  abandoned: the only bound on a client that stops reading.
"""

from __future__ import annotations

import asyncio
from typing import cast

from hypercorn.typing import ASGIReceiveCallable, ASGISendCallable
from quart.asgi import ASGIHTTPConnection
from quart.debug import traceback_response
from quart.wrappers import Request, Response


class LeanHTTPConnection(ASGIHTTPConnection):
    """`quart.asgi.ASGIHTTPConnection` with the handler in the caller's task (module docstring).

    Raises what the handler raises past Quart's error handling (as Quart does), and
    `CancelledError` when the caller's task is cancelled from outside (a server shutting down);
    a cancellation caused by the client's disconnect ends the call normally, as in Quart.
    """

    async def __call__(self, receive: ASGIReceiveCallable, send: ASGISendCallable) -> None:
        request = self._create_request_from_scope(send)
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

    async def handle_request(self, request: Request, send: ASGISendCallable) -> None:
        try:
            response = await self.app.handle_request(request)
        except Exception as error:
            # quart.asgi._handle_exception: the traceback page in debug and testing, else raise.
            if not (self.app.debug or self.app.testing):
                raise
            response = await traceback_response(error)
        if isinstance(response, Response) and response.timeout != Ellipsis:
            timeout = cast("float | None", response.timeout)
        else:
            timeout = self.app.config["RESPONSE_TIMEOUT"]
        try:
            async with asyncio.timeout(timeout):
                await self._send_response(send, response)
        except TimeoutError:
            pass
