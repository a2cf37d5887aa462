"""The Socket.IO peer of the websocket fan-out: python-socketio's ASGI server with its
`AsyncRedisManager` (so the workers share rooms through Redis, as the service's do), served by
Uvicorn. Every `msg` event a client emits is emitted to every client (the seed relay's
behaviour). Set BENCH_REDIS_URL; the channel is per process group."""

import os

import socketio

manager = socketio.AsyncRedisManager(
    os.environ["BENCH_REDIS_URL"], channel=f"bench-socketio-{os.getpgrp()}"
)
server = socketio.AsyncServer(async_mode="asgi", client_manager=manager, cors_allowed_origins="*")
app = socketio.ASGIApp(server)


@server.on("msg")
async def relay(_sid: str, data: str) -> None:
    await server.emit("msg", data)
