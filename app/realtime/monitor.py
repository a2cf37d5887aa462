"""The live memory monitor (contract §4) on a native websocket, `/ws`.

On connect: `{"event": "connect", "data": "连接成功"}`; then every `MONITOR_INTERVAL` seconds
`{"event": "server_response", "data": {<psutil.virtual_memory() fields>}}` to that client only.
One psutil sample per tick per worker serves all of its monitor clients (the original ran one
task per client and broadcast each to everyone).
"""

from __future__ import annotations

import asyncio
import contextlib

import psutil
from quart import Blueprint, render_template, request
from quart_schema import hide

from app import state
from app.auth.identity import current_identity
from app.realtime.connection import Connection, encode, text_frame
from app.realtime.handshake import check_origin
from app.realtime.protocol import FrameError, MonitorFrame, parse_frame
from app.realtime.session import new_connection, run_connection

blueprint = Blueprint("monitor", __name__)
CONNECTED = {"event": "connect", "data": "连接成功"}


def memory_sample() -> dict[str, int | float]:
    """`psutil.virtual_memory()` as a dict: bytes as integers, `percent` a float."""
    sample: dict[str, int | float] = psutil.virtual_memory()._asdict()
    return sample


class MemoryMonitor:
    """Samples memory once per interval while at least one client watches."""

    def __init__(self, interval: float) -> None:
        self.interval = interval
        self.subscribers: set[Connection] = set()
        self._task: asyncio.Task[None] | None = None
        self.samples_taken = 0

    def subscribe(self, connection: Connection) -> None:
        self.subscribers.add(connection)
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._run(), name="memory-monitor")

    def unsubscribe(self, connection: Connection) -> None:
        self.subscribers.discard(connection)

    async def _run(self) -> None:
        while self.subscribers:
            self.samples_taken += 1
            frame = encode({"event": "server_response", "data": memory_sample()})
            wire_frame = text_frame(frame)  # once for every watcher
            for connection in list(self.subscribers):
                connection.send(frame, wire_frame)
            await asyncio.sleep(self.interval)

    async def stop(self) -> None:
        self.subscribers.clear()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(BaseException):
                await self._task


def monitor() -> MemoryMonitor:
    return state.memory_monitor()


async def _on_frame(connection: Connection, text: str) -> None:
    try:
        frame = parse_frame(text, MonitorFrame)
    except FrameError as error:
        connection.send_error(str(error))
        return
    if frame.event == "ping":
        connection.send({"event": "pong"})
    elif frame.event == "stop":
        monitor().unsubscribe(connection)
    else:
        monitor().subscribe(connection)


async def _on_open(connection: Connection) -> None:
    connection.send(CONNECTED)
    monitor().subscribe(connection)


async def _on_close(connection: Connection, _rooms: list[str]) -> None:
    monitor().unsubscribe(connection)


@blueprint.websocket("/ws")
async def memory_socket() -> None:
    check_origin()
    identity = current_identity()
    connection = new_connection("monitor", user_id=identity.user_id if identity else None)
    await run_connection(connection, _on_frame, on_open=_on_open, on_close=_on_close)


# The page's words: English by default, the seed's Chinese with `?lang=zh` (the wire frames
# keep the seed's "连接成功": they are its protocol).
MONITOR_TEXTS = {
    "en": {
        "title": "Live memory use",
        "start": "Start monitoring",
        "stop": "Stop monitoring",
        "idle": "not connected",
        "connected": "connected",
        "reconnecting": "reconnecting…",
        "disconnected": "disconnected",
        "percent_axis": "memory used (%)",
        "time_axis": "seconds ago",
    },
    "zh": {
        "title": "实时监控内存使用情况",
        "start": "开始监控",
        "stop": "停止监控",
        "idle": "未连接",
        "connected": "连接成功",
        "reconnecting": "重新连接中…",
        "disconnected": "已断开",
        "percent_axis": "内存使用 (%)",
        "time_axis": "秒前",
    },
}


@blueprint.get("/")
@hide
async def monitor_page() -> str:
    """Live memory use (the seed's 实时监控内存使用情况, in Chinese with `?lang=zh`): start/stop
    buttons, a table of fields, and a live chart with labelled axes."""
    lang = "zh" if request.args.get("lang") == "zh" else "en"
    return await render_template(
        "monitor.html",
        identity=current_identity(),
        interval=state.settings().monitor_interval,
        lang=lang,
        texts=MONITOR_TEXTS[lang],
    )
