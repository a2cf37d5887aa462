"""`/api/v1/tag` routes on MariaDB and SQLite (contract §1, §3)."""

from __future__ import annotations

import pytest

from tests.helpers import ID_PATTERN, create_blog, create_tag, create_user, failed, ok

UNKNOWN_ID = "00000000-0000-7000-8000-000000000000"


async def test_create_get_and_list(client) -> None:
    first = await create_tag(client, "python")
    second = await create_tag(client, "python")  # tag names need not be unique, as in the original
    assert ID_PATTERN.match(first["id"]) and first == {"id": first["id"], "name": "python"}
    assert await ok(await client.get(f"/api/v1/tag/{first['id']}")) == first
    response = await client.get("/api/v1/tag")
    assert await ok(response) == [first, second]
    assert response.headers["X-Total-Count"] == "2"


async def test_list_pages(client) -> None:
    tags = [await create_tag(client, f"t{i}") for i in range(3)]
    assert await ok(await client.get("/api/v1/tag?limit=1&offset=2")) == tags[2:]


async def test_put_renames(client) -> None:
    tag = await create_tag(client, "pyhton")
    path = f"/api/v1/tag/{tag['id']}"
    assert await ok(await client.put(path, json={"name": "python"})) == {
        "id": tag["id"],
        "name": "python",
    }
    assert (await ok(await client.get(path)))["name"] == "python"


async def test_tag_blogs_lists_the_blogs_carrying_it(client) -> None:
    alice, bob = await create_user(client, "alice"), await create_user(client, "bob")
    tag, other = await create_tag(client, "python"), await create_tag(client, "go")
    first = await create_blog(client, alice["id"], [tag["id"], other["id"]])
    await create_blog(client, alice["id"], [other["id"]])
    third = await create_blog(client, bob["id"], [tag["id"]])

    data = await ok(await client.get(f"/api/v1/tag/{tag['id']}/blogs"))
    assert data == {"id": tag["id"], "name": "python", "blogs": [first, third]}


async def test_delete_unlinks_from_blogs(client) -> None:
    user = await create_user(client)
    tag, kept = await create_tag(client, "gone"), await create_tag(client, "kept")
    blog = await create_blog(client, user["id"], [tag["id"], kept["id"]])
    path = f"/api/v1/tag/{tag['id']}"
    assert await ok(await client.delete(path)) == "successfully deleted."
    await failed(await client.get(path), 404, "GET", path)
    assert (await ok(await client.get(f"/api/v1/blog/{blog['id']}")))["tags"] == [kept]


@pytest.mark.parametrize(
    ("method", "suffix", "body"),
    [
        ("GET", "", None),
        ("PUT", "", {"name": "x"}),
        ("DELETE", "", None),
        ("GET", "/blogs", None),
    ],
)
async def test_unknown_id_is_404(client, method, suffix, body) -> None:
    path = f"/api/v1/tag/{UNKNOWN_ID}{suffix}"
    response = await client.open(path, method=method, json=body)
    assert await failed(response, 404, method, path) == "Tag's id does not exist."


@pytest.mark.parametrize(
    "body", [{}, {"name": None}, {"name": 1}, {"name": " "}, {"name": "x" * 65}]
)
async def test_bad_body_is_400_naming_the_field(client, body) -> None:
    msg = await failed(await client.post("/api/v1/tag", json=body), 400, "POST", "/api/v1/tag")
    assert msg.startswith("name:"), msg
    assert await ok(await client.get("/api/v1/tag")) == []
