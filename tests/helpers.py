"""Small helpers for API tests: envelope assertions and object factories over the test client."""

from __future__ import annotations

import re
from typing import Any

ID_PATTERN = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
TIME_PATTERN = re.compile(r"^\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}$")


async def ok(response, status: int = 200) -> Any:
    """Assert a success envelope with `status`; return its `data`."""
    body = await response.get_json()
    assert response.status_code == status, body
    assert set(body) == {"code", "data", "status"}, body
    assert body["code"] == 0 and body["status"] == "succeed", body
    return body["data"]


async def failed(response, status: int, method: str, path: str) -> str:
    """Assert an error envelope with `status` for `METHOD path`; return its `msg`."""
    body = await response.get_json()
    assert response.status_code == status, body
    assert body == {
        "code": status,
        "msg": body.get("msg"),
        "request": f"{method} {path}",
        "status": "failed",
    }, body
    assert isinstance(body["msg"], str) and body["msg"], body
    for leak in (
        "Traceback",
        "SELECT ",
        "INSERT ",
        "UPDATE ",
        "DELETE FROM",
        "sqlalchemy",
        "KeyError",
    ):
        assert leak not in body["msg"], body["msg"]
    return body["msg"]


async def create_user(client, name: str = "alice", role: int = 0) -> dict:
    return await ok(await client.post("/api/v1/user", json={"name": name, "role": role}))


async def create_tag(client, name: str = "python") -> dict:
    return await ok(await client.post("/api/v1/tag", json={"name": name}))


async def create_blog(client, user_id: str, tags: list[str] | None = None, **fields) -> dict:
    body = {"title": "Hello", "context": "First post", "user_id": user_id, "tags": tags or []}
    body.update(fields)
    return await ok(await client.post("/api/v1/blog", json=body))
