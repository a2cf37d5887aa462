"""The floor of a Quart websocket relay: each text frame to every connected client of this
process, with Quart's websocket object and nothing else (no queue, no JSON, no broker)."""

from quart import Quart, websocket

app = Quart(__name__)
clients: set = set()


@app.websocket("/")
async def relay() -> None:
    client = websocket._get_current_object()  # type: ignore[attr-defined]
    clients.add(client)
    try:
        while True:
            data = await websocket.receive()
            for other in list(clients):
                await other.send(data)
    finally:
        clients.discard(client)
