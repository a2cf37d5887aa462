"""`/api/v1/user` routes on MariaDB and SQLite (contract §1, §3)."""

from __future__ import annotations

import pytest

from app.state import app_state
from tests.helpers import ID_PATTERN, create_blog, create_tag, create_user, failed, ok

UNKNOWN_ID = "00000000-0000-7000-8000-000000000000"


async def test_create_returns_the_user(client) -> None:
    user = await create_user(client, "alice", 1)
    assert ID_PATTERN.match(user["id"])
    assert user == {"id": user["id"], "name": "alice", "role": 1}


async def test_ids_are_not_uuid1(client) -> None:
    user = await create_user(client)
    assert user["id"][14] != "1", "uuid1 leaks the host's MAC address"


async def test_list_in_insertion_order_with_total(client) -> None:
    names = [f"user{i}" for i in range(5)]
    for name in reversed(names):
        await create_user(client, name)
    response = await client.get("/api/v1/user")
    users = await ok(response)
    assert [user["name"] for user in users] == list(reversed(names))
    assert response.headers["X-Total-Count"] == "5"


async def test_list_pages(client) -> None:
    for i in range(5):
        await create_user(client, f"user{i}")
    response = await client.get("/api/v1/user?limit=2&offset=1")
    assert [user["name"] for user in await ok(response)] == ["user1", "user2"]
    assert response.headers["X-Total-Count"] == "5"


async def test_get_one(client) -> None:
    user = await create_user(client)
    assert await ok(await client.get(f"/api/v1/user/{user['id']}")) == user


async def test_put_replaces_name_and_role(client) -> None:
    user = await create_user(client, "alice", 0)
    updated = await ok(
        await client.put(f"/api/v1/user/{user['id']}", json={"name": "alicia", "role": 1})
    )
    assert updated == {"id": user["id"], "name": "alicia", "role": 1}
    assert await ok(await client.get(f"/api/v1/user/{user['id']}")) == updated


async def test_put_keeping_own_name_is_not_a_conflict(client) -> None:
    user = await create_user(client, "alice", 0)
    updated = await ok(
        await client.put(f"/api/v1/user/{user['id']}", json={"name": "alice", "role": 1})
    )
    assert updated["role"] == 1


async def test_delete_cascades_to_blogs_and_links(client, app) -> None:
    owner = await create_user(client, "owner")
    other = await create_user(client, "other")
    tag = await create_tag(client)
    await create_blog(client, owner["id"], [tag["id"]])
    kept = await create_blog(client, other["id"], [tag["id"]])

    path = f"/api/v1/user/{owner['id']}"
    assert await ok(await client.delete(path)) == "successfully deleted."
    await failed(await client.get(path), 404, "GET", path)
    assert [blog["id"] for blog in await ok(await client.get("/api/v1/blog"))] == [kept["id"]]
    tag_blogs = await ok(await client.get(f"/api/v1/tag/{tag['id']}/blogs"))
    assert [blog["id"] for blog in tag_blogs["blogs"]] == [kept["id"]]

    from sqlalchemy import func, select

    from app.models import blog_tags

    async with app_state(app).database.session() as session:
        assert await session.scalar(select(func.count()).select_from(blog_tags)) == 1


async def test_user_blogs(client) -> None:
    user = await create_user(client)
    tag = await create_tag(client)
    first = await create_blog(client, user["id"], [tag["id"]], title="one")
    second = await create_blog(client, user["id"], [], title="two")
    await create_blog(client, (await create_user(client, "bob"))["id"], title="not hers")

    data = await ok(await client.get(f"/api/v1/user/{user['id']}/blogs"))
    assert {key: data[key] for key in ("id", "name", "role")} == user
    assert data["blogs"] == [first, second]


async def test_duplicate_name_is_409_without_sql(client) -> None:
    await create_user(client, "alice")
    msg = await failed(
        await client.post("/api/v1/user", json={"name": "alice", "role": 0}),
        409,
        "POST",
        "/api/v1/user",
    )
    assert "name" in msg and "alice" in msg
    assert len(await ok(await client.get("/api/v1/user"))) == 1


async def test_rename_to_a_taken_name_is_409(client) -> None:
    await create_user(client, "alice")
    bob = await create_user(client, "bob")
    path = f"/api/v1/user/{bob['id']}"
    await failed(await client.put(path, json={"name": "alice", "role": 0}), 409, "PUT", path)
    assert (await ok(await client.get(path)))["name"] == "bob"


@pytest.mark.parametrize(
    ("method", "suffix"),
    [("GET", ""), ("PUT", ""), ("DELETE", ""), ("GET", "/blogs")],
)
async def test_unknown_id_is_404_with_the_original_message(client, method, suffix) -> None:
    path = f"/api/v1/user/{UNKNOWN_ID}{suffix}"
    body = {"name": "x", "role": 0} if method == "PUT" else None
    response = await client.open(path, method=method, json=body)
    assert await failed(response, 404, method, path) == "User's id does not exist."


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"role": 0}, "name"),
        ({"name": "a"}, "role"),
        ({"name": 5, "role": 0}, "name"),
        ({"name": "a", "role": "1"}, "role"),
        ({"name": "a", "role": True}, "role"),
        ({"name": "a", "role": 2}, "role"),
        ({"name": "", "role": 0}, "name"),
        ({"name": "x" * 65, "role": 0}, "name"),
        ({"name": None, "role": 0}, "name"),
    ],
)
async def test_bad_body_is_400_naming_the_field(client, body, field) -> None:
    msg = await failed(await client.post("/api/v1/user", json=body), 400, "POST", "/api/v1/user")
    assert msg.startswith(f"{field}:"), msg
    assert await ok(await client.get("/api/v1/user")) == []


async def test_bad_put_body_changes_nothing(client) -> None:
    user = await create_user(client, "alice", 0)
    path = f"/api/v1/user/{user['id']}"
    msg = await failed(await client.put(path, json={"name": "alicia"}), 400, "PUT", path)
    assert msg.startswith("role:")
    assert await ok(await client.get(path)) == user


@pytest.mark.parametrize("other", ["ROOT", "Root", "ｒｏｏｔ"])  # the last is full-width
async def test_names_are_unique_case_insensitively(client, other) -> None:
    user = await create_user(client, "root")
    msg = await failed(
        await client.post("/api/v1/user", json={"name": other, "role": 0}),
        409,
        "POST",
        "/api/v1/user",
    )
    assert msg.startswith("name:")
    second = await create_user(client, "bob")
    await failed(
        await client.put(f"/api/v1/user/{second['id']}", json={"name": other, "role": 0}),
        409,
        "PUT",
        f"/api/v1/user/{second['id']}",
    )
    # Renaming oneself in another case is allowed: it is the same name.
    assert (
        await ok(await client.put(f"/api/v1/user/{user['id']}", json={"name": "Root", "role": 0}))
    )["name"] == "Root"


@pytest.mark.parametrize(
    "name",
    [
        "nul\x00name",
        "bell\x07",
        "new\nline",
        "rtl\u202eoverride",
        "\u202etoor",
        "zero\u200bwidth",
        "del\x7f",
        "\u3164\u3164",
        "\u115f\u1160",
        "\u2800",
        "wide\u3000space",
        "soft\u00adhyphen",
        "private\ue000use",
    ],
)
async def test_control_and_invisible_characters_are_refused_in_names(client, name) -> None:  # fmt: skip
    msg = await failed(
        await client.post("/api/v1/user", json={"name": name, "role": 0}),
        400,
        "POST",
        "/api/v1/user",
    )
    assert msg.startswith("name:") and "control, bidi, invisible or blank" in msg
    assert "U+" in msg  # names the character
    msg = await failed(
        await client.post("/api/v1/tag", json={"name": name}), 400, "POST", "/api/v1/tag"
    )
    assert msg.startswith("name:")
    assert await ok(await client.get("/api/v1/user")) == []
