"""`/websocket`: the seed's anonymous group chat: every text frame goes to every client."""

from __future__ import annotations

from app.realtime.connection import Connection
from app.realtime.messages import ToEndpoint
from app.ws.handshake import check_origin
from app.ws.session import current_hub, identity_fields, new_connection, run_connection

RELAY: ToEndpoint = {"kind": "endpoint", "endpoint": "relay"}


async def _relay(connection: Connection, text: str) -> None:
    if text == "":  # an empty frame is a heartbeat: it keeps the connection, nobody sees it
        return
    # The sender's own copy first, before anything awaits: in the order of its frames and
    # before the next is read, as an echo server's (Autobahn 3.4, 4.1.5: a frame that breaks
    # the protocol right after a message closed the connection before its echo). A publish to
    # the others that fails then follows it with an error frame.
    connection.send(text)
    await current_hub().publish(RELAY, text, skip=connection.id)


async def relay_socket() -> None:
    check_origin()
    await run_connection(new_connection("relay", user_id=identity_fields()["user_id"]), _relay)
