"""Login and token endpoints are rate-limited per client, across workers when Redis is set."""

from __future__ import annotations

import pytest

from tests.auth_helpers import basic, make_user
from tests.helpers import failed


async def attempt_logins(client, count: int) -> list[int]:  # noqa: ANN001
    statuses = []
    for _ in range(count):
        response = await client.post("/login", json={"name": "alice", "password": "wrong"})
        statuses.append(response.status_code)
    return statuses


async def test_login_is_limited_in_memory(serve_app) -> None:
    async with serve_app(auth_rate_limit="3/minute") as app:
        client = app.test_client()
        assert await attempt_logins(client, 3) == [401, 401, 401]
        response = await client.post("/login", json={"name": "alice", "password": "wrong"})
        msg = await failed(response, 429, "POST", "/login")
        assert "too many attempts" in msg
        assert 1 <= int(response.headers["Retry-After"]) <= 60


async def test_token_endpoint_is_limited_separately(serve_app) -> None:
    async with serve_app(auth_rate_limit="2/minute") as app:
        await make_user(app, "alice", password="alice-password")
        client = app.test_client()
        await attempt_logins(client, 3)
        for _ in range(2):
            response = await client.post("/api/v1/tokens", headers=basic("alice", "alice-password"))
            assert response.status_code == 200
        response = await client.post("/api/v1/tokens", headers=basic("alice", "alice-password"))
        await failed(response, 429, "POST", "/api/v1/tokens")
        assert response.headers["Retry-After"].isdigit()


@pytest.mark.parametrize("database_url", ["mysql"], indirect=True)
async def test_limit_is_shared_by_workers_through_redis(serve_app, redis_url) -> None:
    settings = {"auth_rate_limit": "4/minute", "redis_url": redis_url}
    async with serve_app(**settings) as first, serve_app(**settings) as second:
        assert await attempt_logins(first.test_client(), 2) == [401, 401]
        assert await attempt_logins(second.test_client(), 2) == [401, 401]
        assert await attempt_logins(first.test_client(), 1) == [429]
        assert await attempt_logins(second.test_client(), 1) == [429]


async def test_a_stopped_redis_does_not_block_logins(serve_app) -> None:
    # Port 1 on loopback: nothing listens, connections are refused at once.
    async with serve_app(redis_url="redis://127.0.0.1:1/0", redis_timeout=0.5) as app:
        await make_user(app, "alice", password="alice-password")
        response = await app.test_client().post(
            "/login", json={"name": "alice", "password": "alice-password"}
        )
        assert response.status_code == 200
