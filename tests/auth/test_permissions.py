"""Who may do what with API_AUTH=required, and the original's open API with API_AUTH=open."""

from __future__ import annotations

import pytest

from tests.auth_helpers import basic, make_user
from tests.helpers import failed, ok

ADMIN = basic("root", "password-1")
ALICE = basic("alice", "password-1")
BOB = basic("bob", "password-1")


@pytest.fixture
async def app(serve_app):
    async with serve_app() as app:
        await make_user(app, "root", role=1)
        yield app


@pytest.fixture
async def people(app) -> dict:
    alice = await make_user(app, "alice")
    bob = await make_user(app, "bob")
    return {"alice": alice.id, "bob": bob.id}


async def blog_of(client, headers, user_id) -> dict:
    body = {"title": "t", "context": "c", "user_id": user_id, "tags": []}
    return await ok(await client.post("/api/v1/blog", json=body, headers=headers))


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("POST", "/api/v1/user", {"name": "x", "role": 0}),
        ("PUT", "/api/v1/user/some-id", {"name": "x", "role": 0}),
        ("DELETE", "/api/v1/user/some-id", None),
        ("POST", "/api/v1/blog", {"title": "t", "context": "c", "user_id": "u", "tags": []}),
        ("PUT", "/api/v1/blog/some-id", {"title": "t", "context": "c", "tags": []}),
        ("DELETE", "/api/v1/blog/some-id", None),
        ("POST", "/api/v1/tag", {"name": "x"}),
        ("PUT", "/api/v1/tag/some-id", {"name": "x"}),
        ("DELETE", "/api/v1/tag/some-id", None),
    ],
)
async def test_anonymous_writes_are_401(client, method, path, body) -> None:
    response = await client.open(path, method=method, json=body)
    assert (await failed(response, 401, method, path)).startswith("authentication required")
    assert response.headers.get_all("WWW-Authenticate")


@pytest.mark.parametrize("path", ["/api/v1/user", "/api/v1/blog", "/api/v1/tag", "/api/v1/online"])
async def test_reads_stay_open(client, path) -> None:
    await ok(await client.get(path))


async def test_only_admins_create_users(client, people) -> None:
    await failed(
        await client.post("/api/v1/user", json={"name": "eve", "role": 0}, headers=ALICE),
        403,
        "POST",
        "/api/v1/user",
    )
    await ok(await client.post("/api/v1/user", json={"name": "eve", "role": 1}, headers=ADMIN))


async def test_users_edit_themselves_but_not_their_role(client, people) -> None:
    path = f"/api/v1/user/{people['alice']}"
    await ok(await client.put(path, json={"name": "alice2", "role": 0}, headers=ALICE))
    alice2 = basic("alice2", "password-1")
    msg = await failed(
        await client.put(path, json={"name": "alice2", "role": 1}, headers=alice2), 403, "PUT", path
    )
    assert msg.startswith("role:")
    other = f"/api/v1/user/{people['bob']}"
    await failed(
        await client.put(other, json={"name": "bobo", "role": 0}, headers=alice2), 403, "PUT", other
    )
    assert (await ok(await client.put(other, json={"name": "bob", "role": 1}, headers=ADMIN)))[
        "role"
    ] == 1


async def test_only_admins_delete_other_users(client, people) -> None:
    bob = f"/api/v1/user/{people['bob']}"
    await failed(await client.delete(bob, headers=ALICE), 403, "DELETE", bob)
    await ok(await client.delete(bob, headers=ADMIN))
    alice = f"/api/v1/user/{people['alice']}"
    await ok(await client.delete(alice, headers=ALICE))  # one's own account


async def test_users_write_only_their_own_blogs(client, people) -> None:
    mine = await blog_of(client, ALICE, people["alice"])
    await failed(
        await client.post(
            "/api/v1/blog",
            headers=ALICE,
            json={"title": "t", "context": "c", "user_id": people["bob"], "tags": []},
        ),
        403,
        "POST",
        "/api/v1/blog",
    )
    path = f"/api/v1/blog/{mine['id']}"
    body = {"title": "new", "context": "c", "tags": []}
    await failed(await client.put(path, json=body, headers=BOB), 403, "PUT", path)
    await failed(await client.delete(path, headers=BOB), 403, "DELETE", path)
    assert (await ok(await client.get(path)))["title"] == "t"  # nothing changed
    await ok(await client.put(path, json=body, headers=ALICE))
    await ok(await client.delete(path, headers=ALICE))


async def test_admins_may_do_everything(client, people) -> None:
    blog = await blog_of(client, ADMIN, people["bob"])  # on bob's behalf
    path = f"/api/v1/blog/{blog['id']}"
    await ok(await client.put(path, json={"title": "x", "context": "y", "tags": []}, headers=ADMIN))
    await ok(await client.delete(path, headers=ADMIN))


async def test_tags_are_created_by_anyone_and_managed_by_admins(client, people) -> None:
    tag = await ok(await client.post("/api/v1/tag", json={"name": "py"}, headers=ALICE))
    path = f"/api/v1/tag/{tag['id']}"
    await failed(await client.put(path, json={"name": "go"}, headers=ALICE), 403, "PUT", path)
    await failed(await client.delete(path, headers=ALICE), 403, "DELETE", path)
    await ok(await client.put(path, json={"name": "python"}, headers=ADMIN))
    await ok(await client.delete(path, headers=ADMIN))


async def test_unknown_ids_are_404_before_403(client, people) -> None:
    for method, path in [
        ("DELETE", "/api/v1/blog/nope"),
        ("DELETE", "/api/v1/user/nope"),
        ("DELETE", "/api/v1/tag/nope"),
    ]:
        await failed(await client.open(path, method=method, headers=ALICE), 404, method, path)


async def test_open_mode_restores_anonymous_writes(serve_app) -> None:
    async with serve_app(api_auth="open") as app:
        client = app.test_client()
        user = await ok(await client.post("/api/v1/user", json={"name": "x", "role": 1}))
        await ok(await client.delete(f"/api/v1/user/{user['id']}"))
