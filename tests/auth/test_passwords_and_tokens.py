"""Passwords (Argon2id, write-only), Basic auth, and bearer tokens: issue, use, expiry, revocation."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import select, update

from app.models import ApiToken, User, utcnow
from app.state import app_state
from tests.auth_helpers import basic, bearer, make_user
from tests.helpers import failed, ok


@pytest.fixture
async def app(serve_app):
    async with serve_app() as app:  # API_AUTH=required, the default
        yield app


async def test_password_is_stored_as_argon2id_and_never_returned(app, client) -> None:
    await make_user(app, "root", role=1, password="root-password")
    created = await ok(
        await client.post(
            "/api/v1/user",
            json={"name": "alice", "role": 0, "password": "alice-password"},
            headers=basic("root", "root-password"),
        )
    )
    assert set(created) == {"id", "name", "role"}
    for path in ("/api/v1/user", f"/api/v1/user/{created['id']}"):
        assert "password" not in await (await client.get(path)).get_data(as_text=True)
    async with app_state(app).database.session() as session:
        stored = await session.scalar(select(User.password_hash).where(User.name == "alice"))
    assert stored.startswith("$argon2id$v=19$m=19456,t=2,p=1$")
    assert "alice-password" not in stored


async def test_put_without_password_keeps_it(app, client) -> None:
    user = await make_user(app, "alice", password="first-password")
    path = f"/api/v1/user/{user.id}"
    await ok(
        await client.put(
            path, json={"name": "alicia", "role": 0}, headers=basic("alice", "first-password")
        )
    )
    assert (
        await client.get("/api/v1/me", headers=basic("alicia", "first-password"))
    ).status_code == 200
    await ok(
        await client.put(
            path,
            json={"name": "alicia", "role": 0, "password": "second-password"},
            headers=basic("alicia", "first-password"),
        )
    )
    assert (
        await client.get("/api/v1/me", headers=basic("alicia", "first-password"))
    ).status_code == 401
    assert (
        await client.get("/api/v1/me", headers=basic("alicia", "second-password"))
    ).status_code == 200


@pytest.mark.parametrize("password", ["short", 12345678, ""])
async def test_bad_password_is_400(app, client, password) -> None:
    await make_user(app, "root", role=1, password="root-password")
    msg = await failed(
        await client.post(
            "/api/v1/user",
            json={"name": "a", "role": 0, "password": password},
            headers=basic("root", "root-password"),
        ),
        400,
        "POST",
        "/api/v1/user",
    )
    assert msg.startswith("password:")


@pytest.mark.parametrize(
    "headers",
    [
        basic("alice", "wrong-password"),
        basic("nobody", "password-1"),
        {"Authorization": "Basic !!!not-base64"},
        {"Authorization": "Bearer not-a-token"},
        {"Authorization": "Digest username=alice"},
        {"Authorization": "Bearer"},
    ],
)
async def test_wrong_credentials_are_401_with_www_authenticate(app, client, headers) -> None:
    await make_user(app, "alice")
    response = await client.get("/api/v1/me", headers=headers)
    msg = await failed(response, 401, "GET", "/api/v1/me")
    assert msg.startswith("Authorization:")
    challenges = response.headers.get_all("WWW-Authenticate")
    assert any(c.startswith("Basic realm=") and "quart-framework" in c for c in challenges)
    assert any(c.startswith("Bearer realm=") for c in challenges)


async def test_user_without_password_cannot_log_in(app, client) -> None:
    async with app_state(app).database.session() as session:
        session.add(User(name="legacy", role=0))  # created by the original: no password
        await session.commit()
    await failed(
        await client.get("/api/v1/me", headers=basic("legacy", "")), 401, "GET", "/api/v1/me"
    )


async def test_token_issue_use_and_revoke(app, client) -> None:
    user = await make_user(app, "alice", password="alice-password")
    data = await ok(await client.post("/api/v1/tokens", headers=basic("alice", "alice-password")))
    assert data["expires_in"] == 3600 and len(data["token"]) >= 40
    me = await ok(await client.get("/api/v1/me", headers=bearer(data["token"])))
    assert me == {"id": user.id, "name": "alice", "role": 0}

    assert await ok(await client.delete("/api/v1/tokens", headers=bearer(data["token"]))) == (
        "successfully revoked."
    )
    response = await client.get("/api/v1/me", headers=bearer(data["token"]))
    assert "revoked" in await failed(response, 401, "GET", "/api/v1/me")


async def test_only_the_token_hash_is_stored(app, client) -> None:
    await make_user(app, "alice", password="alice-password")
    token = (
        await ok(await client.post("/api/v1/tokens", headers=basic("alice", "alice-password")))
    )["token"]
    async with app_state(app).database.session() as session:
        stored = list(await session.scalars(select(ApiToken.token_hash)))
    assert len(stored) == 1 and token not in stored[0] and len(stored[0]) == 64


async def test_revocation_is_seen_by_another_worker(app, client, serve_app) -> None:
    await make_user(app, "alice", password="alice-password")
    token = (
        await ok(await client.post("/api/v1/tokens", headers=basic("alice", "alice-password")))
    )["token"]
    async with serve_app() as other_worker:
        other = other_worker.test_client()
        await ok(await other.get("/api/v1/me", headers=bearer(token)))
        await ok(await client.delete("/api/v1/tokens", headers=bearer(token)))
        await failed(await other.get("/api/v1/me", headers=bearer(token)), 401, "GET", "/api/v1/me")


async def test_expired_token_is_401(app, client) -> None:
    await make_user(app, "alice", password="alice-password")
    token = (
        await ok(await client.post("/api/v1/tokens", headers=basic("alice", "alice-password")))
    )["token"]
    async with app_state(app).database.session() as session:
        await session.execute(update(ApiToken).values(expires_at=utcnow() - timedelta(seconds=1)))
        await session.commit()
    response = await client.get("/api/v1/me", headers=bearer(token))
    assert "expired" in await failed(response, 401, "GET", "/api/v1/me")


async def test_token_ttl_is_configurable(serve_app) -> None:
    async with serve_app(token_ttl_seconds=120) as app:
        await make_user(app, "alice", password="alice-password")
        client = app.test_client()
        data = await ok(
            await client.post("/api/v1/tokens", headers=basic("alice", "alice-password"))
        )
        assert data["expires_in"] == 120
        async with app_state(app).database.session() as session:
            row = await session.scalar(select(ApiToken))
        assert timedelta(seconds=110) < row.expires_at - utcnow() <= timedelta(seconds=120)


async def test_a_token_cannot_mint_tokens_and_anonymous_cannot_either(app, client) -> None:
    await make_user(app, "alice", password="alice-password")
    token = (
        await ok(await client.post("/api/v1/tokens", headers=basic("alice", "alice-password")))
    )["token"]
    await failed(
        await client.post("/api/v1/tokens", headers=bearer(token)), 401, "POST", "/api/v1/tokens"
    )
    await failed(await client.post("/api/v1/tokens"), 401, "POST", "/api/v1/tokens")
    await failed(
        await client.delete("/api/v1/tokens", headers=basic("alice", "alice-password")),
        401,
        "DELETE",
        "/api/v1/tokens",
    )


async def test_deleting_a_user_deletes_their_tokens(app, client) -> None:
    user = await make_user(app, "alice", password="alice-password")
    token = (
        await ok(await client.post("/api/v1/tokens", headers=basic("alice", "alice-password")))
    )["token"]
    await ok(await client.delete(f"/api/v1/user/{user.id}", headers=bearer(token)))
    await failed(await client.get("/api/v1/me", headers=bearer(token)), 401, "GET", "/api/v1/me")
    async with app_state(app).database.session() as session:
        assert list(await session.scalars(select(ApiToken))) == []


async def test_a_hash_with_old_parameters_is_upgraded_at_the_next_login(app, client) -> None:
    """A hash made with weaker parameters (an older release, another system) still logs in,
    and is replaced by one with today's parameters; tokens and other credentials live on."""
    from argon2 import PasswordHasher

    user = await make_user(app, "alice", password="alice-password")
    token = await ok(await client.post("/api/v1/tokens", headers=basic("alice", "alice-password")))
    weak = PasswordHasher(time_cost=1, memory_cost=8192, parallelism=1).hash("alice-password")
    async with app_state(app).database.session() as session:
        await session.execute(update(User).where(User.id == user.id).values(password_hash=weak))
        await session.commit()
    await ok(await client.get("/api/v1/me", headers=basic("alice", "alice-password")))
    async with app_state(app).database.session() as session:
        stored = await session.scalar(select(User.password_hash).where(User.id == user.id))
    assert stored != weak and stored.startswith("$argon2id$v=19$m=19456,t=2,p=1$")
    await ok(await client.get("/api/v1/me", headers=basic("alice", "alice-password")))
    await ok(await client.get("/api/v1/me", headers=bearer(token["token"])))
    await failed(
        await client.get("/api/v1/me", headers=basic("alice", "wrong-password")),
        401,
        "GET",
        "/api/v1/me",
    )
