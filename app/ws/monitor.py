"""The live memory monitor (contract §4) on a native websocket, `/ws`.

On connect: `{"event": "connect", "data": "连接成功"}`; then every `MONITOR_INTERVAL` seconds
`{"event": "server_response", "data": {<psutil.virtual_memory() fields>}}` to that client only.
One psutil sample per tick per worker serves all of its monitor clients (the original ran one
task per client and broadcast each to everyone).
"""

from __future__ import annotations

from quart import Blueprint, render_template, request
from quart_schema import hide

from app import state
from app.auth.identity import current_identity
from app.realtime.connection import Connection
from app.realtime.memory import MemoryMonitor
from app.realtime.protocol import FrameError, MonitorFrame, parse_frame
from app.ws.handshake import check_origin
from app.ws.session import new_connection, run_connection

blueprint = Blueprint("monitor", __name__)
CONNECTED = {"event": "connect", "data": "连接成功"}


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
