"""ETags and conditional requests on users, blogs and tags, on MariaDB and SQLite
(app.api.conditional; RFC 9110 §13). The 2-worker checks are in tests/e2e/test_safe_retries.py."""

from __future__ import annotations

import asyncio
from collections import Counter

import pytest
from sqlalchemy import event, func, select

from app.models import Blog
from app.state import app_state
from tests.helpers import create_blog, create_tag, create_user, failed, ok


async def etag_of(client, path: str) -> str:
    response = await client.get(path)
    await ok(response)
    return response.headers["ETag"]


@pytest.fixture
async def blog(client) -> dict:
    owner = await create_user(client, "owner")
    tag = await create_tag(client, "python")
    return await create_blog(client, owner["id"], [tag["id"]])


async def test_every_single_object_answer_has_a_strong_etag(client, blog) -> None:
    owner_id, tag_id = blog["owner"]["id"], blog["tags"][0]["id"]
    for path in (f"/api/v1/user/{owner_id}", f"/api/v1/blog/{blog['id']}", f"/api/v1/tag/{tag_id}"):
        assert await etag_of(client, path) == '"1"', path
    created = await client.post("/api/v1/tag", json={"name": "new"})
    assert created.headers["ETag"] == '"1"'
    renamed = await client.put(f"/api/v1/tag/{tag_id}", json={"name": "py"})
    assert renamed.headers["ETag"] == '"2"'
    assert "ETag" not in (await client.get("/api/v1/tag")).headers  # lists have none


@pytest.mark.parametrize("kind", ["user", "blog", "tag"])
async def test_if_none_match_answers_304_without_a_body(client, blog, kind) -> None:
    object_id = {"user": blog["owner"]["id"], "blog": blog["id"], "tag": blog["tags"][0]["id"]}[
        kind
    ]
    path = f"/api/v1/{kind}/{object_id}"
    current = await etag_of(client, path)
    for header in (current, f"W/{current}", f'"99", {current}', "*"):
        response = await client.get(path, headers={"If-None-Match": header})
        assert response.status_code == 304, header
        assert await response.get_data() == b""
        assert response.headers["ETag"] == current
    stale = await client.get(path, headers={"If-None-Match": '"99"'})
    assert (await ok(stale))["id"] == object_id


async def test_a_conditional_blog_get_reads_only_the_version(app, client, blog) -> None:
    database = app_state(app).database
    statements: list[str] = []

    def count(_conn, _cursor, statement, *_args) -> None:
        statements.append(statement)

    engines = {database.engine.sync_engine, database.read_engine.sync_engine}
    for engine in engines:
        event.listen(engine, "before_cursor_execute", count)
    try:
        response = await client.get(f"/api/v1/blog/{blog['id']}", headers={"If-None-Match": '"1"'})
        assert response.status_code == 304
        assert len(statements) == 1 and "version" in statements[0], statements
        assert "blog_tags" not in statements[0] and "users" not in statements[0]
    finally:
        for engine in engines:
            event.remove(engine, "before_cursor_execute", count)


async def test_a_stale_if_match_is_412_and_changes_nothing(client, blog) -> None:
    path = f"/api/v1/blog/{blog['id']}"
    body = {"title": "new", "context": "C", "tags": []}
    replaced = await client.put(path, json=body, headers={"If-Match": '"1"'})
    assert (await ok(replaced))["title"] == "new" and replaced.headers["ETag"] == '"2"'
    stale = await client.put(path, json={**body, "title": "lost"}, headers={"If-Match": '"1"'})
    assert "changed since that ETag" in await failed(stale, 412, "PUT", path)
    weak = await client.put(path, json={**body, "title": "lost"}, headers={"If-Match": 'W/"2"'})
    await failed(weak, 412, "PUT", path)  # If-Match compares strongly
    assert (await ok(await client.get(path)))["title"] == "new"
    deleted = await client.delete(path, headers={"If-Match": '"1"'})
    await failed(deleted, 412, "DELETE", path)
    await ok(await client.get(path))
    await ok(await client.delete(path, headers={"If-Match": '"2"'}))
    await failed(await client.get(path), 404, "GET", path)


@pytest.mark.parametrize("kind", ["user", "tag"])
async def test_if_match_on_users_and_tags(client, blog, kind) -> None:
    object_id = blog["owner"]["id"] if kind == "user" else blog["tags"][0]["id"]
    path = f"/api/v1/{kind}/{object_id}"
    body = {"name": "renamed", "role": 0} if kind == "user" else {"name": "renamed"}
    await failed(await client.put(path, json=body, headers={"If-Match": '"7"'}), 412, "PUT", path)
    star = await client.put(path, json=body, headers={"If-Match": "*"})
    assert (await ok(star))["name"] == "renamed" and star.headers["ETag"] == '"2"'
    await failed(await client.delete(path, headers={"If-Match": '"1"'}), 412, "DELETE", path)
    await ok(await client.delete(path, headers={"If-Match": '"2"'}))


async def test_what_a_blog_shows_of_its_owner_and_tags_changes_its_etag(client, blog) -> None:
    path = f"/api/v1/blog/{blog['id']}"
    owner, tag = blog["owner"], blog["tags"][0]
    assert await etag_of(client, path) == '"1"'
    await ok(await client.put(f"/api/v1/tag/{tag['id']}", json={"name": "renamed"}))
    assert await etag_of(client, path) == '"2"'
    await ok(await client.put(f"/api/v1/tag/{tag['id']}", json={"name": "renamed"}))  # no change
    assert await etag_of(client, path) == '"2"'
    await ok(await client.put(f"/api/v1/user/{owner['id']}", json={"name": "boss", "role": 0}))
    assert await etag_of(client, path) == '"3"'
    await ok(await client.delete(f"/api/v1/tag/{tag['id']}"))
    assert await etag_of(client, path) == '"4"'
    assert (await ok(await client.get(path)))["tags"] == []


async def test_require_if_match_refuses_unconditional_writes_with_428(serve_app) -> None:
    async with serve_app(require_if_match=True, api_auth="open") as app:
        client = app.test_client()
        tag = await create_tag(client)  # a create needs no If-Match
        path = f"/api/v1/tag/{tag['id']}"
        refused = await client.put(path, json={"name": "x"})
        assert (await failed(refused, 428, "PUT", path)).startswith("If-Match: required")
        await failed(await client.delete(path), 428, "DELETE", path)
        await ok(await client.put(path, json={"name": "x"}, headers={"If-Match": '"1"'}))


async def test_of_writers_holding_one_etag_exactly_one_wins(app, client, blog) -> None:
    path = f"/api/v1/blog/{blog['id']}"

    async def write(number: int) -> int:
        body = {"title": f"writer {number}", "context": "C", "tags": []}
        response = await client.put(path, json=body, headers={"If-Match": '"1"'})
        return response.status_code

    statuses = Counter(await asyncio.gather(*(write(n) for n in range(8))))
    assert statuses == {200: 1, 412: 7}, statuses
    async with app_state(app).database.session() as session:
        assert await session.scalar(select(func.max(Blog.version))) == 2
