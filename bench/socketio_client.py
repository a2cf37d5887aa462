"""Socket.IO clients for the python-socketio peer (bench/peers.py), spoken in Engine.IO 4 over
plain `websockets` connections, so the load generator is the same as the service's: each
client connects to the default namespace, answers the server's pings, and sends and receives
`msg` events whose data is the seed relay's text (a timestamp inside, one clock)."""

from __future__ import annotations

import json
from typing import Any

from websockets.asyncio.client import ClientConnection, connect

from bench import websocket_load
from bench.servers import Server

PATH = "/socket.io/?EIO=4&transport=websocket"


class SocketIOClient:
    """One Socket.IO client: `send(text)` emits `msg`, `recv()` returns the next `msg`'s data.
    Looks like a `websockets` connection to bench/websocket_load.py."""

    def __init__(self, connection: ClientConnection) -> None:
        self.connection = connection

    @classmethod
    async def open(cls, url: str) -> SocketIOClient:
        connection = await connect(
            url + PATH, compression=None, max_size=None, max_queue=None, open_timeout=120,
            ping_interval=None,
        )  # fmt: skip
        opened = await connection.recv()
        if not str(opened).startswith("0"):
            raise RuntimeError(f"not an Engine.IO open packet: {opened!r}")
        await connection.send("40")
        while not str(await connection.recv()).startswith("40"):
            pass
        return cls(connection)

    @property
    def transport(self) -> Any:
        return self.connection.transport

    async def send(self, text: str) -> None:
        await self.connection.send("42" + json.dumps(["msg", text]))

    async def recv(self) -> str:
        while True:
            packet = str(await self.connection.recv())
            if packet == "2":  # the server's ping
                await self.connection.send("3")
            elif packet.startswith("42"):
                event, data = json.loads(packet[2:])[:2]
                if event == "msg":
                    return str(data)

    def __aiter__(self) -> SocketIOClient:
        return self

    async def __anext__(self) -> str:
        return await self.recv()

    async def close(self) -> None:
        await self.connection.close()


async def open_clients(url: str, count: int, *, batch: int = 100, deflate: bool = False) -> list[
    SocketIOClient
]:  # fmt: skip
    import asyncio

    clients: list[SocketIOClient] = []
    while len(clients) < count:
        size = min(batch, count - len(clients))
        clients += await asyncio.gather(*(SocketIOClient.open(url) for _ in range(size)))
    return clients


async def fanout(
    server: Server, *, receivers: int, rate: float, messages: int, burst: int
) -> websocket_load.FanoutResult:
    return await websocket_load.fanout(
        server,
        "",
        receivers=receivers,
        rate=rate,
        messages=messages,
        burst=burst,
        opener=open_clients,  # type: ignore[arg-type]
    )


async def idle_memory(server: Server, count: int) -> float:
    per_connection, _ = await websocket_load.idle_memory(
        server,
        "",
        count,
        join=False,
        opener=open_clients,  # type: ignore[arg-type]
    )
    return per_connection
