from __future__ import annotations

import json

import pytest


@pytest.fixture(params=["sqlite"])
def database_url(request, tmp_path, sqlite_template) -> str:
    """Websocket logic does not depend on the database backend; SQLite keeps these tests fast
    (the end-to-end websocket tests run against MariaDB)."""
    import shutil

    shutil.copyfile(sqlite_template, tmp_path / "app.db")
    return f"sqlite+aiosqlite:///{tmp_path / 'app.db'}"


async def receive_json(ws, timeout: float = 5) -> dict:
    import asyncio

    return json.loads(await asyncio.wait_for(ws.receive(), timeout))


async def send_json(ws, frame: dict) -> None:
    await ws.send(json.dumps(frame))
