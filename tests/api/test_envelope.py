"""The envelope and the error handling shared by every route (contract §2, §3)."""

from __future__ import annotations

import logging

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from app.factory import create_app
from app.state import app_state
from tests.conftest import make_settings
from tests.helpers import failed, ok


async def test_success_envelope_keys_are_sorted(client) -> None:
    response = await client.get("/api/v1/user")
    assert (
        await response.get_data(as_text=True)
    ).strip() == '{"code":0,"data":[],"status":"succeed"}'


async def test_unknown_route_is_404_without_query_in_request(client) -> None:
    response = await client.get("/api/v1/nothing?x=1")
    await failed(response, 404, "GET", "/api/v1/nothing")
    text = await response.get_data(as_text=True)
    assert (
        text.index('"code"')
        < text.index('"msg"')
        < text.index('"request"')
        < text.index('"status"')
    )


@pytest.mark.parametrize("path", ["/api/v1/blog/", "/api/v1/user/", "/api/v1/tag/"])
async def test_trailing_slash_is_404(client, path) -> None:
    await failed(await client.get(path), 404, "GET", path)


@pytest.mark.parametrize(
    ("method", "path", "allowed"),
    [
        ("PATCH", "/api/v1/user", {"GET", "POST"}),
        ("POST", "/api/v1/blog/some-id", {"GET", "PUT", "DELETE"}),
        ("DELETE", "/api/v1/tag", {"GET", "POST"}),
        ("PUT", "/api/v1/user/x/blogs", {"GET"}),
    ],
)
async def test_405_carries_allow(client, method, path, allowed) -> None:
    response = await client.open(path, method=method)
    await failed(response, 405, method, path)
    assert allowed <= {m.strip() for m in response.headers["Allow"].split(",")}


@pytest.mark.parametrize("path", ["/api/v1/user", "/api/v1/tag", "/api/v1/blog"])
async def test_invalid_json_is_400(client, path) -> None:
    response = await client.post(
        path, data="{not json", headers={"Content-Type": "application/json"}
    )
    assert "not valid JSON" in await failed(response, 400, "POST", path)


async def test_body_that_is_not_json_is_400(client) -> None:
    response = await client.post("/api/v1/user", form={"name": "a", "role": "0"})
    msg = await failed(response, 400, "POST", "/api/v1/user")
    assert "application/json" in msg


@pytest.mark.parametrize("body", [[], "text", 3, None])
async def test_body_that_is_not_an_object_is_400(client, body) -> None:
    response = await client.post(
        "/api/v1/user",
        data=__import__("json").dumps(body),
        headers={"Content-Type": "application/json"},
    )
    assert (
        await failed(response, 400, "POST", "/api/v1/user") == "request body must be a JSON object"
    )


@pytest.mark.parametrize(
    "query", ["limit=0", "limit=abc", "offset=-1", "limit=1001", "offset=99999999999999999999"]
)
async def test_bad_paging_is_400_naming_the_parameter(client, query) -> None:
    msg = await failed(await client.get(f"/api/v1/tag?{query}"), 400, "GET", "/api/v1/tag")
    assert msg.startswith(query.split("=")[0] + ":"), msg


async def test_body_over_max_content_length_is_413(client) -> None:
    response = await client.post("/api/v1/tag", json={"name": "x" * (2 * 1024 * 1024)})
    await failed(response, 413, "POST", "/api/v1/tag")


async def test_request_id_is_echoed_or_generated(client) -> None:
    response = await client.get("/api/v1/tag", headers={"X-Request-ID": "abc-123"})
    assert response.headers["X-Request-ID"] == "abc-123"
    response = await client.get("/api/v1/tag", headers={"X-Request-ID": "bad id;<x>"})
    assert (
        response.headers["X-Request-ID"] != "bad id;<x>"
        and len(response.headers["X-Request-ID"]) == 32
    )


async def test_unexpected_error_is_a_generic_500_logged_with_request_id(settings, caplog) -> None:
    app = create_app(settings)

    @app.get("/api/v1/boom")
    async def boom() -> None:
        raise RuntimeError("SELECT secret FROM users WHERE password='hunter2'")

    logger = logging.getLogger("app")
    logger.addHandler(caplog.handler)
    try:
        async with app.test_app():
            response = await app.test_client().get("/api/v1/boom")
    finally:
        logger.removeHandler(caplog.handler)
    msg = await failed(response, 500, "GET", "/api/v1/boom")
    request_id = response.headers["X-Request-ID"]
    assert request_id in msg and "hunter2" not in msg
    record = next(r for r in caplog.records if r.levelno == logging.ERROR)
    assert request_id in record.getMessage() and record.exc_info is not None


@pytest.mark.parametrize("database_url", ["mysql"], indirect=True)
async def test_exhausted_pool_is_503_with_retry_after(database_url) -> None:
    settings = make_settings(database_url, db_pool_size=1, db_max_overflow=0, db_pool_timeout=0.2)
    app = create_app(settings)
    async with app.test_app():
        engine: AsyncEngine = app_state(app).database.engine
        async with engine.connect():  # the only connection of the pool, held
            response = await app.test_client().get("/api/v1/user")
            msg = await failed(response, 503, "GET", "/api/v1/user")
            assert "database" in msg and response.headers["Retry-After"].isdigit()
        await ok(await app.test_client().get("/api/v1/user"))


async def test_openapi_documents_the_routes(client) -> None:
    response = await client.get("/openapi.json")
    assert response.status_code == 200
    spec = await response.get_json()
    for path in (
        "/api/v1/user",
        "/api/v1/user/{user_id}",
        "/api/v1/blog",
        "/api/v1/tag/{tag_id}/blogs",
    ):
        assert path in spec["paths"], path
    assert "BlogCreate" in str(spec["paths"]["/api/v1/blog"]["post"])
    docs = await client.get("/docs")
    assert docs.status_code == 200 and "openapi.json" in await docs.get_data(as_text=True)


def test_json_output_is_always_valid_json() -> None:
    """NaN and Infinity have no JSON form (RFC 8259 §6): responses carry null instead."""
    from app.json_provider import dumps, loads

    assert dumps({"b": float("nan"), "a": float("-inf")}) == b'{"a":null,"b":null}'
    for text in (b'{"x": NaN}', b"[Infinity]", b'"\xff"', b"[" * 2000 + b"]" * 2000):
        with pytest.raises(ValueError):
            loads(text)
