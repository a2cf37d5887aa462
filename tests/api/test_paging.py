"""Cursor paging beside limit/offset on the three lists, on MariaDB and SQLite (docs/api.md
"Paging"). The walk under 10 concurrent writers on 2 workers is in tests/e2e/test_safe_retries.py."""

from __future__ import annotations

import pytest

from tests.helpers import create_tag, create_user, failed, ok


async def walk(client, path: str, limit: int, between=None) -> tuple[list[dict], int]:
    """Every item of a cursor walk, and the number of pages; `between()` runs after each page."""
    items, pages = [], 0
    response = await client.get(path, query_string={"limit": limit})
    while True:
        items += await ok(response)
        pages += 1
        if between is not None:
            await between()
        cursor = response.headers.get("X-Next-Cursor")
        if cursor is None:
            return items, pages
        assert response.headers["Link"].endswith('>; rel="next"')
        response = await client.get(path, query_string={"cursor": cursor, "limit": limit})


async def test_a_cursor_walk_returns_every_row_once(client) -> None:
    created = [await create_tag(client, f"tag-{n}") for n in range(25)]
    items, pages = await walk(client, "/api/v1/tag", 10)
    assert items == created and pages == 3
    offset_page = await client.get("/api/v1/tag", query_string={"limit": 10, "offset": 10})
    assert await ok(offset_page) == created[10:20]  # the original's paging is unchanged
    assert offset_page.headers["X-Total-Count"] == "25"


async def test_rows_inserted_during_a_walk_do_not_shift_it(client) -> None:
    before = [await create_user(client, f"user-{n}") for n in range(12)]
    count = 0

    async def insert_three() -> None:
        nonlocal count
        for _ in range(3):
            count += 1
            await create_user(client, f"late-{count}")

    items, _ = await walk(client, "/api/v1/user", 5, between=insert_three)
    names = [item["name"] for item in items]
    assert [n for n in names if n.startswith("user-")] == [u["name"] for u in before]
    assert len(names) == len(set(names))  # nothing twice


@pytest.mark.parametrize(
    ("query", "message"),
    [
        ({"cursor": "forged"}, "cursor: not a cursor of this list"),
        ({"cursor": "WyJ0YWdzIiwieCJd.invalid"}, "cursor: not a cursor of this list"),
        ({"cursor": "x", "offset": 5}, "cursor: give a cursor or an offset, not both"),
    ],
)
async def test_bad_cursors_are_400_naming_the_field(client, query, message) -> None:
    response = await client.get("/api/v1/blog", query_string=query)
    assert (await failed(response, 400, "GET", "/api/v1/blog")).startswith(message)


async def test_a_cursor_belongs_to_its_list(client) -> None:
    for n in range(3):
        await create_tag(client, f"t{n}")
    cursor = (await client.get("/api/v1/tag", query_string={"limit": 2})).headers["X-Next-Cursor"]
    response = await client.get("/api/v1/user", query_string={"cursor": cursor})
    assert (await failed(response, 400, "GET", "/api/v1/user")).startswith("cursor: not a cursor")


async def test_blogs_walk_with_owners_and_tags(client) -> None:
    from tests.helpers import create_blog

    owner = await create_user(client, "owner")
    tag = await create_tag(client)
    blogs = [await create_blog(client, owner["id"], [tag["id"]], title=f"b{n}") for n in range(7)]
    items, pages = await walk(client, "/api/v1/blog", 3)
    assert items == blogs and pages == 3
