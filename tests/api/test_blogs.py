"""`/api/v1/blog` routes on MariaDB and SQLite (contract §1, §3)."""

from __future__ import annotations

from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import func, select

from app.models import blog_tags
from app.state import app_state
from tests.helpers import ID_PATTERN, TIME_PATTERN, create_blog, create_tag, create_user, failed, ok

UNKNOWN_ID = "00000000-0000-7000-8000-000000000000"


@pytest.fixture
async def owner(client) -> dict:
    return await create_user(client, "owner", 0)


async def count_links(app) -> int:
    async with app_state(app).database.session() as session:
        return await session.scalar(select(func.count()).select_from(blog_tags))


async def test_create_returns_blog_with_owner_and_tags(client, owner) -> None:
    python, web = await create_tag(client, "python"), await create_tag(client, "web")
    blog = await create_blog(client, owner["id"], [web["id"], python["id"]], title="T", context="C")
    assert ID_PATTERN.match(blog["id"])
    assert blog == {
        "id": blog["id"],
        "title": "T",
        "context": "C",
        "owner": owner,
        "tags": [python, web],  # a blog's tags come in tag creation order
        "create_time": blog["create_time"],
        "modify_time": None,
    }
    assert TIME_PATTERN.match(blog["create_time"])


async def test_create_time_is_in_the_display_timezone(client, owner) -> None:
    blog = await create_blog(client, owner["id"])
    shown = datetime.strptime(blog["create_time"], "%Y-%m-%d %H:%M:%S")
    now_shanghai = datetime.now(ZoneInfo("Asia/Shanghai")).replace(tzinfo=None)
    assert abs(now_shanghai - shown) < timedelta(minutes=1)


async def test_duplicate_tag_ids_are_linked_once(client, owner, app) -> None:
    tag = await create_tag(client)
    blog = await create_blog(client, owner["id"], [tag["id"], tag["id"]])
    assert blog["tags"] == [tag]
    assert await count_links(app) == 1


async def test_get_and_list(client, owner) -> None:
    tag = await create_tag(client)
    first = await create_blog(client, owner["id"], [tag["id"]], title="first")
    second = await create_blog(client, owner["id"], [], title="second")
    assert await ok(await client.get(f"/api/v1/blog/{first['id']}")) == first
    response = await client.get("/api/v1/blog")
    assert await ok(response) == [first, second]
    assert response.headers["X-Total-Count"] == "2"


async def test_list_pages(client, owner) -> None:
    blogs = [await create_blog(client, owner["id"], title=f"b{i}") for i in range(4)]
    response = await client.get("/api/v1/blog?limit=2&offset=2")
    assert await ok(response) == blogs[2:]
    assert response.headers["X-Total-Count"] == "4"
    assert await ok(await client.get("/api/v1/blog?offset=10")) == []


async def test_list_costs_a_constant_number_of_queries(client, owner, query_counter) -> None:
    tags = [await create_tag(client, f"t{i}") for i in range(3)]
    await create_blog(client, owner["id"], [tags[0]["id"]])
    query_counter.reset()
    await ok(await client.get("/api/v1/blog"))
    few = query_counter.count

    for i in range(10):
        other = await create_user(client, f"u{i}")
        await create_blog(client, other["id"], [tag["id"] for tag in tags])
    query_counter.reset()
    assert len(await ok(await client.get("/api/v1/blog"))) == 11
    assert query_counter.count == few <= 3, query_counter.statements


async def test_put_replaces_fields_and_tags(client, owner, app) -> None:
    a, b, c = [await create_tag(client, name) for name in "abc"]
    blog = await create_blog(client, owner["id"], [a["id"], b["id"]])
    path = f"/api/v1/blog/{blog['id']}"
    updated = await ok(
        await client.put(path, json={"title": "New", "context": "Body", "tags": [c["id"], b["id"]]})
    )
    assert updated["title"] == "New" and updated["context"] == "Body"
    assert updated["tags"] == [b, c]
    assert updated["owner"] == owner
    assert updated["create_time"] == blog["create_time"]
    assert TIME_PATTERN.match(updated["modify_time"])
    assert await ok(await client.get(path)) == updated
    assert await count_links(app) == 2

    # The original appended here: repeating the PUT must not grow the link table.
    await ok(
        await client.put(path, json={"title": "New", "context": "Body", "tags": [b["id"], c["id"]]})
    )
    assert await count_links(app) == 2
    await ok(await client.put(path, json={"title": "New", "context": "Body", "tags": []}))
    assert await count_links(app) == 0


async def test_delete_after_tag_changes(client, owner, app) -> None:
    tag = await create_tag(client)
    blog = await create_blog(client, owner["id"], [tag["id"]])
    path = f"/api/v1/blog/{blog['id']}"
    await ok(await client.put(path, json={"title": "x", "context": "y", "tags": [tag["id"]]}))
    assert await ok(await client.delete(path)) == "successfully deleted."
    await failed(await client.get(path), 404, "GET", path)
    assert await count_links(app) == 0
    assert await ok(await client.get(f"/api/v1/tag/{tag['id']}")) == tag


async def test_unknown_user_saves_nothing(client) -> None:
    tag = await create_tag(client)
    msg = await failed(
        await client.post(
            "/api/v1/blog",
            json={"title": "t", "context": "c", "user_id": UNKNOWN_ID, "tags": [tag["id"]]},
        ),
        400,
        "POST",
        "/api/v1/blog",
    )
    assert msg.startswith("user_id:") and UNKNOWN_ID in msg
    assert await ok(await client.get("/api/v1/blog")) == []


async def test_unknown_tag_saves_nothing(client, owner, app) -> None:
    tag = await create_tag(client)
    msg = await failed(
        await client.post(
            "/api/v1/blog",
            json={
                "title": "t",
                "context": "c",
                "user_id": owner["id"],
                "tags": [tag["id"], "nope"],
            },
        ),
        400,
        "POST",
        "/api/v1/blog",
    )
    assert msg.startswith("tags:") and "'nope'" in msg
    assert await ok(await client.get("/api/v1/blog")) == []
    assert await count_links(app) == 0


async def test_put_with_unknown_tag_changes_nothing(client, owner) -> None:
    tag = await create_tag(client)
    blog = await create_blog(client, owner["id"], [tag["id"]])
    path = f"/api/v1/blog/{blog['id']}"
    msg = await failed(
        await client.put(path, json={"title": "new", "context": "c", "tags": ["nope"]}),
        400,
        "PUT",
        path,
    )
    assert msg.startswith("tags:")
    assert await ok(await client.get(path)) == blog


@pytest.mark.parametrize(
    ("method", "body"),
    [
        ("GET", None),
        ("PUT", {"title": "t", "context": "c", "tags": []}),
        ("DELETE", None),
    ],
)
async def test_unknown_id_is_404(client, method, body) -> None:
    path = f"/api/v1/blog/{UNKNOWN_ID}"
    response = await client.open(path, method=method, json=body)
    assert await failed(response, 404, method, path) == "Blog's id does not exist."


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"title": None}, "title"),
        ({"title": "x" * 121}, "title"),
        ({"title": ""}, "title"),
        ({"context": 3}, "context"),
        ({"user_id": 7}, "user_id"),
        ({"tags": None}, "tags"),
        ({"tags": "abc"}, "tags"),
        ({"tags": [1]}, "tags[0]"),
    ],
)
async def test_bad_body_is_400_naming_the_field(client, owner, change, field) -> None:
    body = {"title": "t", "context": "c", "user_id": owner["id"], "tags": [], **change}
    msg = await failed(await client.post("/api/v1/blog", json=body), 400, "POST", "/api/v1/blog")
    assert msg.startswith(f"{field}:"), msg
    assert await ok(await client.get("/api/v1/blog")) == []


@pytest.mark.parametrize("missing", ["title", "context", "user_id", "tags"])
async def test_missing_field_is_400(client, owner, missing) -> None:
    body = {"title": "t", "context": "c", "user_id": owner["id"], "tags": []}
    del body[missing]
    msg = await failed(await client.post("/api/v1/blog", json=body), 400, "POST", "/api/v1/blog")
    assert msg == f"{missing}: Field required"


async def test_title_of_120_characters_is_accepted(client, owner) -> None:
    blog = await create_blog(client, owner["id"], title="é" * 120)
    assert blog["title"] == "é" * 120


async def test_unicode_round_trips(client, owner) -> None:
    blog = await create_blog(client, owner["id"], title="实时监控 🚀", context="内存使用情况")
    fetched = await ok(await client.get(f"/api/v1/blog/{blog['id']}"))
    assert fetched["title"] == "实时监控 🚀" and fetched["context"] == "内存使用情况"


async def test_long_context_round_trips(client, owner) -> None:
    context = "é" * 40_000  # 80 KB of UTF-8: more than MySQL's TEXT holds
    blog = await create_blog(client, owner["id"], context=context)
    assert (await ok(await client.get(f"/api/v1/blog/{blog['id']}")))["context"] == context


async def test_context_over_the_limit_is_400(client, owner) -> None:
    body = {"title": "t", "context": "x" * 1_000_001, "user_id": owner["id"], "tags": []}
    msg = await failed(await client.post("/api/v1/blog", json=body), 400, "POST", "/api/v1/blog")
    assert msg.startswith("context:")
