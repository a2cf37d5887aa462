"""ASGI middleware that keeps consuming a websocket's incoming messages after the app is done.

Hypercorn hands a websocket's messages to the app through a queue of `max_app_queue_size` (10)
and waits while it is full. Quart stops reading that queue when its handler returns, so after a
handler closes a flooding client, Hypercorn's read loop waited forever on the full queue: it no
longer saw the client abort, and the connection task held every graceful shutdown to its
timeout. Here the incoming messages are read by a task of their own: while the app runs it
gets each one; afterwards they are dropped until the server reports the disconnect, which ends
the task, once nothing more arrives (a disconnect seen while writing can come before the
last frames already read).
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

ASGIApp = Any  # (scope, receive, send) -> Awaitable[None]

AFTER_DISCONNECT_SECONDS = 1.0
# The scope key under which a websocket's ASGI `send` reaches the app (Connection writes its
# frames through it; Quart's `websocket.send` adds a loop turn, an accept check and a signal
# to every frame: about a third of a broadcast delivery's CPU, measured by bench/).
ASGI_SEND = "quart_framework.asgi_send"
_draining: set[asyncio.Task[None]] = set()  # referenced until done (asyncio keeps weak refs)


class DrainWebsocketReceive:
    """Wrap `app` so a websocket's `receive` never stalls the server once the app returned."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "websocket":
            await self.app(scope, receive, send)
            return
        inbox: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        app_done = asyncio.Event()

        async def pump() -> None:
            while True:
                message = await receive()
                if not app_done.is_set():
                    inbox.put_nowait(message)
                if message["type"] == "websocket.disconnect":
                    break
            # A disconnect noticed while writing can come before the last frames already read:
            # keep taking them until the server has had nothing to hand over for a while.
            with contextlib.suppress(TimeoutError):
                while True:
                    await asyncio.wait_for(receive(), AFTER_DISCONNECT_SECONDS)

        task = asyncio.ensure_future(pump())
        _draining.add(task)
        task.add_done_callback(_draining.discard)
        try:
            await self.app({**scope, ASGI_SEND: send}, inbox.get, send)
        finally:
            app_done.set()
            while not inbox.empty():
                inbox.get_nowait()


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
