"""ASGI middleware that keeps consuming a websocket's incoming messages after the app is done.

Hypercorn hands a websocket's messages to the app through a queue of `max_app_queue_size` (10)
and waits while it is full. Quart stops reading that queue when its handler returns, so after a
handler closes a flooding client, Hypercorn's read loop waited forever on the full queue: it no
longer saw the client abort, and the connection task held every graceful shutdown to its
timeout. Here, once the app has returned, a task of its own drops the incoming messages until
the server reports the disconnect, and then until nothing more arrives for a while (a
disconnect seen while writing can come before the last frames already read).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable
from typing import Any

ASGIApp = Any  # (scope, receive, send) -> Awaitable[None]

AFTER_DISCONNECT_SECONDS = 1.0
# The scope key under which a websocket's ASGI `send` reaches the app (Connection writes its
# frames through it; Quart's `websocket.send` adds a loop turn, an accept check and a signal
# to every frame: about a third of a broadcast delivery's CPU, measured by bench/).
ASGI_SEND = "quart_framework.asgi_send"
# The close code of the websocket's disconnect, when the server reported one of its own (a
# frame it refused: 1009, app.hypercorn_patches.bound_websocket_close).
SERVER_CLOSE_CODE = "quart_framework.server_close_code"
SERVER_CLOSE_CODES = frozenset({1002, 1007, 1009})


class DrainWebsocketReceive:
    """Wrap `app` so a websocket's `receive` never stalls the server once the app returned.

    Arguments:
        app: the ASGI app.
        drains: where the draining tasks are held until done (`AppState.websocket_drains`).
    """

    def __init__(self, app: ASGIApp, drains: set[asyncio.Task[None]]) -> None:
        self.app = app
        self.drains = drains

    def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> Awaitable[None]:
        if scope["type"] != "websocket":
            result: Awaitable[None] = self.app(scope, receive, send)  # no frame of our own
            return result
        return self._websocket(scope, receive, send)

    async def _websocket(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        disconnected = False

        async def tracked_receive() -> dict[str, Any]:
            nonlocal disconnected
            message: dict[str, Any] = await receive()
            if message["type"] == "websocket.disconnect":
                disconnected = True
                if message.get("code") in SERVER_CLOSE_CODES:
                    scope[SERVER_CLOSE_CODE] = message["code"]
            return message

        scope[ASGI_SEND] = send  # the server's scope of this one connection, not a copy
        try:
            await self.app(scope, tracked_receive, send)
        finally:
            # Only now, and only for a connection whose app returned before the disconnect,
            # does a task take over reading (per connection it would cost a task, a queue
            # and an event for the connection's whole life: bench/, idle memory).
            task = asyncio.ensure_future(_drain(receive, disconnected))
            self.drains.add(task)
            task.add_done_callback(self.drains.discard)


async def _drain(receive: Any, disconnected: bool) -> None:
    """Drop a websocket's incoming messages until the server reports its disconnect, then
    until the server has had nothing to hand over for a while (a disconnect noticed while
    writing can come before the last frames already read)."""
    while not disconnected:
        disconnected = (await receive())["type"] == "websocket.disconnect"
    with contextlib.suppress(TimeoutError):
        while True:
            await asyncio.wait_for(receive(), AFTER_DISCONNECT_SECONDS)


class WebsocketSchemeFromProxy:
    """Keep a websocket's scheme `ws`/`wss` behind a proxy that sends `X-Forwarded-Proto`.

    Hypercorn's ProxyFixMiddleware copies `X-Forwarded-Proto` (`http`/`https`, which is what
    nginx and other proxies send) into the scope of websockets too, and Quart then refuses the
    handshake with 400. Wrapped inside ProxyFixMiddleware, this maps the HTTP scheme to its
    websocket twin (RFC 6455 §3: `ws` is `http`, `wss` is `https`).
    """

    SCHEMES = {"http": "ws", "https": "wss"}

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "websocket" and scope.get("scheme") in self.SCHEMES:
            scope = {**scope, "scheme": self.SCHEMES[scope["scheme"]]}
        await self.app(scope, receive, send)
