"""`/api/v1/online` and `/online`: presence marked by every authenticated request."""

from __future__ import annotations

import pytest

from app.state import app_state
from tests.auth_helpers import basic, bearer, make_user
from tests.helpers import TIME_PATTERN, failed, ok

BACKENDS = ["memory", "database", "redis"]


@pytest.fixture(params=BACKENDS)
async def app(request, serve_app):
    overrides = {"presence_backend": request.param}
    if request.param == "redis":
        overrides["redis_url"] = request.getfixturevalue("redis_url")
    async with serve_app(**overrides) as app:
        yield app


async def test_every_kind_of_authentication_marks_presence(app, client) -> None:
    alice = await make_user(app, "alice", password="alice-password")
    bob = await make_user(app, "bob", password="bob-password")
    await make_user(app, "carol", password="carol-password")
    assert await ok(await client.get("/api/v1/online")) == {"count": 0, "minutes": 5, "users": []}

    await ok(await client.get("/api/v1/tag", headers=basic("alice", "alice-password")))  # Basic
    token = (await ok(await client.post("/api/v1/tokens", headers=basic("bob", "bob-password"))))[
        "token"
    ]
    browser = app.test_client()
    await ok(await browser.post("/login", json={"name": "carol", "password": "carol-password"}))
    await ok(await browser.get("/api/v1/tag"))  # session
    await ok(await client.get("/api/v1/tag", headers=bearer(token)))  # Bearer

    online = await ok(await client.get("/api/v1/online"))
    assert online["count"] == 3 and online["minutes"] == 5
    assert {user["name"] for user in online["users"]} == {"alice", "bob", "carol"}
    assert all(TIME_PATTERN.match(user["last_seen"]) for user in online["users"])

    status = await ok(await client.get(f"/api/v1/online/{alice.id}"))
    assert status["id"] == alice.id and status["online"] is True
    assert TIME_PATTERN.match(status["last_seen"])
    assert bob.id in {user["id"] for user in online["users"]}


async def test_anonymous_and_failed_requests_mark_nobody(app, client) -> None:
    alice = await make_user(app, "alice", password="alice-password")
    await client.get("/api/v1/tag")
    await client.get("/api/v1/tag", headers=basic("alice", "wrong"))
    assert (await ok(await client.get("/api/v1/online")))["count"] == 0
    status = await ok(await client.get(f"/api/v1/online/{alice.id}"))
    assert status == {"id": alice.id, "online": False, "last_seen": None}


async def test_unknown_user_is_404(client) -> None:
    path = "/api/v1/online/no-such-user"
    assert await failed(await client.get(path), 404, "GET", path) == "User's id does not exist."


@pytest.mark.parametrize("query", ["minutes=0", "minutes=abc", "minutes=-3"])
async def test_bad_minutes_is_400(client, query) -> None:
    msg = await failed(await client.get(f"/api/v1/online?{query}"), 400, "GET", "/api/v1/online")
    assert msg.startswith("minutes:")


async def test_window_limits_depend_on_the_backend(app, client) -> None:
    backend = app_state(app).settings.effective_presence_backend
    response = await client.get("/api/v1/online?minutes=4320")  # three days
    if backend == "database":
        assert (await ok(response))["minutes"] == 4320
    else:
        msg = await failed(response, 400, "GET", "/api/v1/online")
        assert msg == "minutes: must be from 1 to 5"


async def test_online_page_lists_names(app, client) -> None:
    await make_user(app, "alice", password="alice-password")
    await ok(await client.get("/api/v1/tag", headers=basic("alice", "alice-password")))
    html = await (await client.get("/online")).get_data(as_text=True)
    assert (
        "Online (last 5 min): <bdi>alice</bdi>" in html
    )  # isolated: a name cannot reorder the line
