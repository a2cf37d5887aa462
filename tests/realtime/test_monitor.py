"""The memory monitor websocket `/ws` and its page."""

from __future__ import annotations

import pytest

from app.state import app_state
from tests.realtime.conftest import receive_json, send_json

LINUX_FIELDS = {
    "active",
    "available",
    "buffers",
    "cached",
    "free",
    "inactive",
    "percent",
    "shared",
    "slab",
    "total",
    "used",
}


@pytest.fixture
def settings(database_url):
    from tests.conftest import make_settings

    return make_settings(database_url, monitor_interval=0.1, api_auth="open")


async def test_connect_then_samples(client) -> None:
    async with client.websocket("/ws") as ws:
        assert await receive_json(ws) == {"event": "connect", "data": "连接成功"}
        sample = await receive_json(ws)
        assert sample["event"] == "server_response"
        assert set(sample["data"]) == LINUX_FIELDS
        assert isinstance(sample["data"]["percent"], float)
        assert all(isinstance(sample["data"][k], int) for k in LINUX_FIELDS - {"percent"})
        assert 0 < sample["data"]["available"] <= sample["data"]["total"]


async def test_one_sample_per_tick_serves_every_client(app, client) -> None:
    monitor = app_state(app).memory_monitor
    async with (
        client.websocket("/ws") as a,
        client.websocket("/ws") as b,
        client.websocket("/ws") as c,
    ):
        for ws in (a, b, c):
            await receive_json(ws)
        before = monitor.samples_taken
        for _ in range(3):
            frames = [await receive_json(ws) for ws in (a, b, c)]
            assert frames[0] == frames[1] == frames[2]  # the same sample
        assert monitor.samples_taken - before <= 4


async def test_stop_start_ping_and_garbage(client) -> None:
    async with client.websocket("/ws") as ws:
        await receive_json(ws)
        await send_json(ws, {"event": "stop"})
        await send_json(ws, {"event": "ping"})
        frame = await receive_json(ws)
        while frame["event"] == "server_response":  # samples queued before the stop
            frame = await receive_json(ws)
        assert frame == {"event": "pong"}
        await ws.send("rubbish")
        error = await receive_json(ws)
        assert error["event"] == "error" and error["msg"].startswith("frame is not valid JSON (")
        await send_json(ws, {"event": "explode"})
        assert (await receive_json(ws))["msg"].startswith("event:")
        await send_json(ws, {"event": "start"})
        assert (await receive_json(ws))["event"] == "server_response"


async def test_monitor_page_in_english_and_in_the_seeds_chinese(client) -> None:
    html = await (await client.get("/")).get_data(as_text=True)
    for text in ("Live memory use", "Start monitoring", "Stop monitoring", 'id="chart"', "/ws"):
        assert text in html
    assert "开始监控" not in html and '<a href="?lang=zh">In Chinese</a>' in html
    chinese = await (await client.get("/?lang=zh")).get_data(as_text=True)
    for text in ("实时监控内存使用情况", "开始监控", "停止监控", 'id="chart"', "/ws"):
        assert text in chinese
    unknown = await (await client.get("/?lang=xx")).get_data(as_text=True)
    assert "Live memory use" in unknown
