"""A bare Hypercorn server (asyncio worker, one process) with a tiny ASGI app, and only the
patches of app/hypercorn_patches.py named on the command line: the tests of each patch run it
with and without that patch (tests/test_hypercorn_patches.py).

    python -m tests.hypercorn_server PORT PATCH[:true|false|SECONDS][,PATCH...]|none \
        GRACEFUL_TIMEOUT [KEEP_ALIVE_TIMEOUT]

The app: `GET /late-body` starts its response, waits 0.3 s, then sends its 2-byte body;
`GET /abandoned` starts its response, waits, then fails; `POST /early` answers 413 (and
closes) without reading its body; `GET /body` answers 60,000 bytes (the
access log, on stdout, says when Hypercorn has them, just before it closes a `Connection: close`
connection); `GET /tasks` answers how many asyncio tasks the worker has, `GET /websockets` how many
websocket apps are running; websocket `/echo`
echoes text frames; websocket `/wire` says whether the service's
direct writes apply (`websocket_wire`): "wire", or "hypercorn"; websocket `/close` closes
(1000) at once. The listening socket's send buffer is small (4 KiB), so a client that stops
reading leaves data waiting in the server.
"""

from __future__ import annotations

import asyncio
import signal
import socket
import sys
from typing import Any

from hypercorn.asyncio.run import worker_serve
from hypercorn.config import Config, Sockets
from hypercorn.utils import wrap_app

from app import hypercorn_patches

BODY = b"x" * 60_000
RUNNING: set[Any] = set()  # the websocket apps still running


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] == "lifespan":
        while (await receive())["type"] != "lifespan.shutdown":
            await send({"type": "lifespan.startup.complete"})
        await send({"type": "lifespan.shutdown.complete"})
    elif scope["type"] == "http":
        if scope["path"] == "/early":  # answers before reading the body, as a 413 does
            await send(
                {
                    "type": "http.response.start",
                    "status": 413,
                    "headers": [(b"content-length", b"0"), (b"connection", b"close")],
                }
            )
            await send({"type": "http.response.body", "body": b""})
            return
        while (await receive()).get("more_body"):
            pass
        if scope["path"] in ("/tasks", "/websockets"):
            counted = len(asyncio.all_tasks()) if scope["path"] == "/tasks" else len(RUNNING)
            count = str(counted).encode()
            await send(
                {
                    "type": "http.response.start",
                    "status": 200,
                    "headers": [(b"content-length", str(len(count)).encode())],
                }
            )
            await send({"type": "http.response.body", "body": count})
            return
        if scope["path"] in ("/late-body", "/abandoned"):
            await send(
                {
                    "type": "http.response.start",
                    "status": 200,
                    "headers": [(b"content-length", b"2")],
                }
            )
            await asyncio.sleep(0.3)  # the head, if written at once, is alone on the wire meanwhile
            if scope["path"] == "/abandoned":
                raise RuntimeError("the app fails after starting its response")
            await send({"type": "http.response.body", "body": b"ok"})
            return
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [(b"content-length", str(len(BODY)).encode())],
            }
        )
        await send({"type": "http.response.body", "body": BODY})
    elif scope["type"] == "websocket":
        RUNNING.add(asyncio.current_task())
        try:
            await websocket(scope, receive, send)
        finally:
            RUNNING.discard(asyncio.current_task())


async def websocket(scope: dict[str, Any], receive: Any, send: Any) -> None:
    await receive()  # websocket.connect
    await send({"type": "websocket.accept"})
    if scope["path"] == "/close":
        await send({"type": "websocket.close", "code": 1000})
        return
    if scope["path"] == "/wire":
        wire = hypercorn_patches.websocket_wire(send)
        await send({"type": "websocket.send", "text": "wire" if wire else "hypercorn"})
    while (message := await receive())["type"] == "websocket.receive":
        await send({"type": "websocket.send", "text": message.get("text") or ""})


async def main(
    port: int, patches: list[str], graceful_timeout: float, keep_alive_timeout: float
) -> None:
    # "name", "name:false" (set_websocket_compression's argument) or "name:1.5" (a number:
    # set_header_timeout's seconds, set_body_limit's bytes).
    for patch in patches:
        name, _, argument = patch.partition(":")
        function = getattr(hypercorn_patches, name)
        if not argument:
            function()
        elif argument in ("true", "false"):
            function(argument == "true")
        else:
            number = float(argument)
            function(int(number) if number.is_integer() else number)
    config = Config()
    config.bind = [f"127.0.0.1:{port}"]
    config.graceful_timeout = graceful_timeout
    config.keep_alive_timeout = keep_alive_timeout
    config.accesslog = "-"  # the line comes once the response is handed over, before its close
    listening = socket.socket()
    listening.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listening.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)  # accepted sockets inherit
    listening.bind(("127.0.0.1", port))
    listening.listen(64)
    listening.setblocking(False)
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    await worker_serve(
        wrap_app(app, config.wsgi_max_body_size, "asgi"),
        config,
        sockets=Sockets([], [listening], []),
        shutdown_trigger=stop.wait,
    )


if __name__ == "__main__":
    port, patches, graceful = sys.argv[1:4]
    keep_alive = float(sys.argv[4]) if len(sys.argv) > 4 else 5.0  # Hypercorn's default
    asyncio.run(
        main(
            int(port),
            [] if patches == "none" else patches.split(","),
            float(graceful),
            keep_alive,
        )
    )
