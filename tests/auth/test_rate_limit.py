"""Failed credential checks are limited per account and per client address, on every route that
checks credentials, across workers when Redis is set; right passwords never use the budget."""

from __future__ import annotations

import asyncio

import pytest

from app.auth import identity
from app.passwords import verify_password
from tests.auth_helpers import basic, bearer, make_user
from tests.helpers import failed


async def attempt_logins(client, count: int, name: str = "alice") -> list[int]:
    statuses = []
    for _ in range(count):
        response = await client.post("/login", json={"name": name, "password": "wrong"})
        statuses.append(response.status_code)
    return statuses


async def test_login_is_limited_in_memory(serve_app) -> None:
    async with serve_app(auth_rate_limit="3/minute") as app:
        client = app.test_client()
        assert await attempt_logins(client, 3) == [401, 401, 401]
        response = await client.post("/login", json={"name": "alice", "password": "wrong"})
        msg = await failed(response, 429, "POST", "/login")
        assert "too many failed sign-in attempts for this account" in msg
        assert 1 <= int(response.headers["Retry-After"]) <= 60


async def test_every_route_shares_the_account_budget(serve_app) -> None:
    async with serve_app(auth_rate_limit="3/minute") as app:
        await make_user(app, "alice", password="alice-password")
        client = app.test_client()
        wrong = basic("alice", "wrong")
        assert (await client.get("/api/v1/tag", headers=wrong)).status_code == 401
        assert (await client.post("/api/v1/tokens", headers=wrong)).status_code == 401
        assert await attempt_logins(client, 1) == [401]
        # The budget is spent: every way in now answers 429, before any password is checked.
        for response in (
            await client.get("/api/v1/user", headers=wrong),
            await client.post("/api/v1/tokens", headers=basic("ALICE", "wrong")),
            await client.post("/login", json={"name": "Alice", "password": "x"}),
        ):
            assert response.status_code == 429
            assert response.headers["Retry-After"].isdigit()


async def test_right_passwords_never_use_the_budget(serve_app) -> None:
    async with serve_app(auth_rate_limit="2/minute") as app:
        await make_user(app, "alice", password="alice-password")
        client = app.test_client()
        for _ in range(10):
            response = await client.get("/api/v1/me", headers=basic("alice", "alice-password"))
            assert response.status_code == 200
        for _ in range(3):
            response = await client.post("/api/v1/tokens", headers=basic("alice", "alice-password"))
            assert response.status_code == 200


async def test_the_address_budget_covers_many_accounts(serve_app) -> None:
    async with serve_app(auth_rate_limit="5/minute", auth_address_rate_limit="4/minute") as app:
        client = app.test_client()
        statuses = [
            (await client.get("/api/v1/tag", headers=basic(f"user{n}", "wrong"))).status_code
            for n in range(5)
        ]
        assert statuses == [401, 401, 401, 401, 429]


async def test_a_refused_guess_costs_no_hashing(serve_app, monkeypatch) -> None:
    async with serve_app(auth_rate_limit="2/minute") as app:
        client = app.test_client()
        assert await attempt_logins(client, 2) == [401, 401]
        calls = []

        async def counting_verify(*args: object) -> bool:
            calls.append(args)
            return await verify_password(*args)

        monkeypatch.setattr(identity, "verify_password", counting_verify)
        assert await attempt_logins(client, 5) == [429] * 5
        assert calls == []


async def test_concurrent_guesses_cannot_overshoot_the_limit(serve_app) -> None:
    async with serve_app(auth_rate_limit="3/minute") as app:
        client = app.test_client()
        responses = await asyncio.gather(
            *(client.get("/api/v1/tag", headers=basic("alice", f"guess{n}")) for n in range(12))
        )
        statuses = sorted(response.status_code for response in responses)
        assert statuses == [401] * 3 + [429] * 9


async def test_bearer_failures_are_limited_per_address(serve_app) -> None:
    async with serve_app(auth_address_rate_limit="3/minute") as app:
        client = app.test_client()
        statuses = [
            (await client.get("/api/v1/tag", headers=bearer(f"guess-{n}"))).status_code
            for n in range(4)
        ]
        assert statuses == [401, 401, 401, 429]


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


async def test_websocket_token_guesses_share_the_address_budget(serve_app) -> None:
    from quart.testing.connections import WebsocketResponseError

    async with serve_app(auth_address_rate_limit="2/minute") as app:
        client = app.test_client()
        statuses = []
        for n in range(3):
            with pytest.raises(WebsocketResponseError) as refused:
                async with client.websocket(f"/ws/chat?token=guess-{n}") as ws:
                    await ws.receive()
            statuses.append(refused.value.response.status_code)
        assert statuses == [401, 401, 429]
        # The same address is now refused on HTTP routes too.
        response = await client.get("/api/v1/tag", headers=basic("alice", "wrong"))
        assert response.status_code == 429


async def test_an_unknown_name_costs_the_same_argon2_run_as_a_wrong_password(
    serve_app, monkeypatch
) -> None:
    """No user enumeration by timing: both run one Argon2id verification with the same
    parameters (the unknown name's against a dummy hash)."""
    from argon2 import extract_parameters

    from app.passwords import HASHER, _dummy_hash

    async with serve_app() as app:
        await make_user(app, "alice", password="alice-password")
        verified: list[str | None] = []

        async def counting_verify(password_hash: str | None, password: str) -> bool:
            verified.append(password_hash)
            return await verify_password(password_hash, password)

        monkeypatch.setattr(identity, "verify_password", counting_verify)
        client = app.test_client()
        for name in ("alice", "nobody"):
            response = await client.get("/api/v1/tag", headers=basic(name, "wrong"))
            assert response.status_code == 401
        assert len(verified) == 2 and verified[1] is None
        assert extract_parameters(verified[0]) == extract_parameters(_dummy_hash())
        assert extract_parameters(_dummy_hash()).memory_cost == HASHER.memory_cost


async def test_password_checks_and_their_429_carry_ratelimit_headers(serve_app) -> None:
    """draft-ietf-httpapi-ratelimit-headers: the policies, and what each has left."""
    async with serve_app(auth_rate_limit="3/minute", auth_address_rate_limit="50/minute") as app:
        await make_user(app, "alice", password="alice-password")
        client = app.test_client()
        policy = '"address";q=50;w=60, "account";q=3;w=60'
        right = await client.get("/api/v1/me", headers=basic("alice", "alice-password"))
        assert right.headers["RateLimit-Policy"] == policy
        assert right.headers["RateLimit"] == '"address";r=50;t=60, "account";r=3;t=60'
        lefts = []
        for _ in range(3):
            wrong = await client.get("/api/v1/me", headers=basic("alice", "wrong"))
            assert wrong.status_code == 401 and wrong.headers["RateLimit-Policy"] == policy
            lefts.append(wrong.headers["RateLimit"].split(", ")[1].split(";")[1])
        assert lefts == ["r=2", "r=1", "r=0"]  # after each failure is counted
        refused = await client.get("/api/v1/me", headers=basic("alice", "wrong"))
        assert refused.status_code == 429
        account = refused.headers["RateLimit"].split(", ")[1]
        assert account.startswith('"account";r=0;t=')
        assert int(account.rsplit("=", 1)[1]) == int(refused.headers["Retry-After"])
        anonymous = await client.get("/api/v1/tag")
        assert "RateLimit" not in anonymous.headers  # no credential checked, no limit applied
