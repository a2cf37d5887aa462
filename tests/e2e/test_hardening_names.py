"""The second attack run, replayed: look-alike account names and nicknames are refused."""

from __future__ import annotations

import asyncio
import json

import httpx
import pytest
from websockets.asyncio.client import connect

from tests.e2e.hardening import ADMIN, next_event

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def server(hardening_server):
    return hardening_server


# 8: look-alike names ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "status", "message"),
    [
        ("r\u043eot", 400, "name: mixes scripts"),  # Cyrillic о
        ("roo\u0442", 400, "name: mixes scripts"),  # Cyrillic т
        ("Root\u0301", 400, "name: mixes scripts"),  # a combining acute that composes with nothing
        ("ROOT", 409, "already exists"),
        ("ｒｏｏｔ", 409, "already exists"),
    ],
)
def test_look_alike_account_names_are_refused(server, name, status, message) -> None:
    response = httpx.post(
        f"{server.base_url}/api/v1/user", json={"name": name, "role": 0}, auth=ADMIN, timeout=10
    )
    assert response.status_code == status, response.text
    assert message in response.json()["msg"]


def test_a_name_with_the_skeleton_of_another_is_409(server) -> None:
    created = httpx.post(
        f"{server.base_url}/api/v1/user", json={"name": "bill", "role": 0}, auth=ADMIN, timeout=10
    )
    assert created.status_code == 200
    response = httpx.post(
        f"{server.base_url}/api/v1/user", json={"name": "bi11", "role": 0}, auth=ADMIN, timeout=10
    )
    assert response.status_code == 409
    assert "looks like the existing user name 'bill'" in response.json()["msg"]


@pytest.mark.parametrize("nickname", ["r\u043eot", "bi11"])
def test_look_alike_nicknames_are_refused_in_rooms(server, nickname) -> None:
    httpx.post(
        f"{server.base_url}/api/v1/user", json={"name": "bill", "role": 0}, auth=ADMIN, timeout=10
    )

    async def scenario() -> dict:
        url = server.base_url.replace("http://", "ws://") + "/ws/chat"
        async with connect(url, origin=server.base_url, compression=None) as ws:
            await ws.send(json.dumps({"event": "join", "room": "lobby", "nickname": nickname}))
            return await next_event(ws, "error")

    error = asyncio.run(scenario())
    if nickname == "bi11":  # one script, but the skeleton of the account "bill"
        assert error["ref"] == "join" and "looks like) an account's name" in error["msg"]
    else:  # refused by the frame's schema
        assert error["msg"].startswith("nickname: mixes scripts"), error
