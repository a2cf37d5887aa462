"""Running one accepted websocket under the hub: register, serve, always clean up."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any, cast

from quart import websocket

from app import state
from app.auth.identity import current_identity
from app.metrics import WEBSOCKETS_OPEN
from app.realtime.asgi import ASGI_SEND, SERVER_CLOSE_CODE
from app.realtime.connection import (
    STORE_ERRORS,
    STORE_UNAVAILABLE,
    TRY_AGAIN_LATER,
    Connection,
    FrameHandler,
)
from app.realtime.hub import Hub
from app.realtime.read_rules import ReadRules
from app.realtime.room_service import RoomService

log = logging.getLogger("app.access")


CloseHook = Callable[[Connection, list[str]], Awaitable[None]]
ASGISend = Callable[[dict[str, Any]], Awaitable[None]]


def identity_fields() -> dict[str, str | None]:
    """The handshake's account: `{"name", "user_id"}` (both None for an anonymous client)."""
    identity = current_identity()
    if identity is None:
        return {"name": None, "user_id": None}
    return {"name": identity.actor.name, "user_id": identity.user_id}


def current_hub() -> Hub:
    return state.hub()


def current_rooms() -> RoomService:
    return state.rooms()


def read_rules() -> ReadRules:
    return state.ws_read_rules()


def new_connection(
    endpoint: str, *, name: str | None = None, user_id: str | None = None
) -> Connection:
    settings = state.settings()
    return Connection(
        websocket._get_current_object(),  # type: ignore[attr-defined]
        asgi_send=cast("ASGISend | None", websocket.scope.get(ASGI_SEND)),
        endpoint=endpoint,
        name=name,
        user_id=user_id,
        queue_size=settings.ws_send_queue,
        max_delay=settings.ws_send_max_delay,
        tracebacks=state.tracebacks(),
    )


async def run_connection(
    connection: Connection,
    on_text: FrameHandler,
    *,
    on_open: Callable[[Connection], Awaitable[None]] | None = None,
    on_close: CloseHook | None = None,
) -> None:
    """Register with the hub, run `on_open`, accept, serve frames with `on_text`, then
    unregister and run `on_close(connection, rooms_left)`, even when the server cancels the
    handler.

    Registering and `on_open` (e.g. recording a nickname) come before the handshake completes:
    once the client sees it open, a broadcast or a private message to it is queued for it (its
    writer starts with `serve`), never missed. If `on_open` finds the shared store down, the
    socket is accepted and closed with 1013."""
    hub, rooms = current_hub(), current_rooms()
    await hub.register(connection)
    started = time.monotonic()
    open_gauge = WEBSOCKETS_OPEN.labels(connection.endpoint)
    accepted = False
    try:
        opened = True
        if on_open is not None:
            try:
                await on_open(connection)
            except STORE_ERRORS:
                opened = False
        await websocket.accept()
        open_gauge.inc()
        accepted = True
        log.info("websocket %s opened id=%s", websocket.path, connection.id)
        if not opened:
            connection.close(TRY_AGAIN_LATER, STORE_UNAVAILABLE)
        await connection.serve(on_text, read_rules())
    finally:
        if accepted:
            open_gauge.dec()
        read_rules().forget(connection)
        cleanup = asyncio.ensure_future(_unregister(hub, rooms, connection, on_close))
        code = (
            connection.close_reason[0]
            if connection.close_reason
            else websocket.scope.get(SERVER_CLOSE_CODE, "client")
        )
        log.info(
            "websocket %s closed %s %.1fs id=%s",
            websocket.path,
            code,
            time.monotonic() - started,
            connection.id,
        )
        await asyncio.shield(cleanup)


async def _unregister(
    hub: Hub, rooms: RoomService, connection: Connection, on_close: CloseHook | None
) -> None:
    left = await rooms.leave_all(connection)
    hub.unregister(connection)
    if on_close is not None:
        await on_close(connection, left)
