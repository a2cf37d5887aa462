"""The credential cache (app/credentials/credential_cache.py) with real Redis and the real database:
two served apps share both, as two workers do. A kept answer saves the database query; every
change that ends or alters a credential reaches the other worker at its next request."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import AsyncExitStack

import pytest
from quart import Quart
from redis import Redis
from sqlalchemy import delete

from app.auth.identity import credential_owner
from app.credentials.credential_cache import EPOCH_KEY
from app.models import TOKEN_KIND_BEARER, ApiToken
from app.state import app_state
from tests.auth_helpers import SAME_ORIGIN, basic, bearer, make_user
from tests.helpers import failed, ok

pytestmark = pytest.mark.parametrize("database_url", ["mysql"], indirect=True)


@pytest.fixture
async def workers(serve_app, redis_url: str) -> AsyncIterator[tuple[Quart, Quart]]:
    async with AsyncExitStack() as stack:
        first = await stack.enter_async_context(serve_app(redis_url=redis_url))
        second = await stack.enter_async_context(serve_app(redis_url=redis_url))
        yield first, second


async def token_of(app: Quart, name: str, password: str) -> str:
    data = await ok(await app.test_client().post("/api/v1/tokens", headers=basic(name, password)))
    return str(data["token"])


async def test_a_kept_answer_spares_the_database_query(workers, query_counter_of) -> None:
    first, _ = workers
    await make_user(first, "alice", password="alice-password")
    token = await token_of(first, "alice", "alice-password")
    client = first.test_client()
    counter = query_counter_of(first)

    def token_queries() -> int:
        return sum("api_tokens" in statement for statement in counter.statements)

    await ok(await client.get("/api/v1/me", headers=bearer(token)))
    assert token_queries() == 1
    for _ in range(5):
        await ok(await client.get("/api/v1/me", headers=bearer(token)))
    assert token_queries() == 1, counter.statements


async def test_a_row_deleted_behind_the_services_back_is_still_kept(workers) -> None:
    """What the epoch is for: the cache does not read the database, so only a change made
    through the services (which advances the epoch) ends a kept answer."""
    first, _ = workers
    await make_user(first, "alice", password="alice-password")
    token = await token_of(first, "alice", "alice-password")
    client = first.test_client()
    await ok(await client.get("/api/v1/me", headers=bearer(token)))
    engine = app_state(first).database.engine
    async with engine.begin() as connection:  # not a Session: no flag, no epoch change
        await connection.execute(delete(ApiToken))
    await ok(await client.get("/api/v1/me", headers=bearer(token)))


async def test_revoking_a_token_ends_it_on_the_other_worker_at_once(workers) -> None:
    first, second = workers
    await make_user(first, "alice", password="alice-password")
    token = await token_of(first, "alice", "alice-password")
    other = second.test_client()
    await ok(await other.get("/api/v1/me", headers=bearer(token)))  # kept by the second
    await ok(await first.test_client().delete("/api/v1/tokens", headers=bearer(token)))
    await failed(await other.get("/api/v1/me", headers=bearer(token)), 401, "GET", "/api/v1/me")


async def test_a_role_change_is_seen_by_the_other_worker_at_once(workers) -> None:
    first, second = workers
    await make_user(first, "root", role=1, password="root-password")
    bob = await make_user(first, "bob", role=1, password="bob-password")
    bob_token = await token_of(first, "bob", "bob-password")
    root_token = await token_of(first, "root", "root-password")
    other = second.test_client()
    me = await ok(await other.get("/api/v1/me", headers=bearer(bob_token)))
    assert me["role"] == 1
    await ok(
        await first.test_client().put(
            f"/api/v1/user/{bob.id}", json={"name": "bob", "role": 0}, headers=bearer(root_token)
        )
    )
    # A role change ends bob's other credentials (docs/security.md); a kept one included.
    await failed(await other.get("/api/v1/me", headers=bearer(bob_token)), 401, "GET", "/api/v1/me")


async def test_a_rename_is_seen_by_the_other_worker_at_once(workers) -> None:
    first, second = workers
    alice = await make_user(first, "alice", password="alice-password")
    token = await token_of(first, "alice", "alice-password")

    async def name_seen_by_the_second() -> str | None:
        async with second.app_context():  # the identity chat frames and permissions use
            actor = await credential_owner(token, TOKEN_KIND_BEARER)
        return None if actor is None else actor.name

    assert await name_seen_by_the_second() == "alice"  # and kept
    await ok(
        await first.test_client().put(
            f"/api/v1/user/{alice.id}", json={"name": "alicia", "role": 0}, headers=bearer(token)
        )
    )
    assert await name_seen_by_the_second() == "alicia"


async def test_deleting_a_user_ends_their_kept_credentials(workers) -> None:
    first, second = workers
    alice = await make_user(first, "alice", password="alice-password")
    token = await token_of(first, "alice", "alice-password")
    other = second.test_client()
    await ok(await other.get("/api/v1/me", headers=bearer(token)))
    await ok(await first.test_client().delete(f"/api/v1/user/{alice.id}", headers=bearer(token)))
    await failed(await other.get("/api/v1/me", headers=bearer(token)), 401, "GET", "/api/v1/me")


async def test_logout_ends_a_kept_session_on_the_other_worker(workers) -> None:
    first, second = workers
    await make_user(first, "alice", password="alice-password")
    browser = first.test_client()
    login = await browser.post("/login", json={"name": "alice", "password": "alice-password"})
    await ok(login)
    # The cookie as sent, replayed to the second worker after the logout (as a thief would).
    cookie = {"Cookie": login.headers["Set-Cookie"].split(";", 1)[0]}
    other = second.test_client()
    await ok(await other.get("/api/v1/me", headers=cookie))
    await ok(await browser.post("/logout", json={}, headers=SAME_ORIGIN))
    await failed(await other.get("/api/v1/me", headers=cookie), 401, "GET", "/api/v1/me")


async def test_presence_marks_in_the_database_do_not_touch_the_epoch(
    serve_app, redis_url: str
) -> None:
    async with serve_app(redis_url=redis_url, presence_backend="database") as app:
        await make_user(app, "alice", password="alice-password")
        token = await token_of(app, "alice", "alice-password")
        redis = Redis.from_url(redis_url)
        before = redis.get(EPOCH_KEY)
        for _ in range(3):
            await ok(await app.test_client().get("/api/v1/me", headers=bearer(token)))
        assert app_state(app).presence is not None
        assert redis.get(EPOCH_KEY) == before
        redis.close()


async def test_without_a_reachable_redis_every_check_reads_the_database(serve_app) -> None:
    """Redis unreachable (nothing listens on the port): no answer is kept, revocation works."""
    async with serve_app(redis_url="redis://127.0.0.1:9/0", redis_timeout=0.2) as app:
        await make_user(app, "alice", password="alice-password")
        token = await token_of(app, "alice", "alice-password")
        client = app.test_client()
        await ok(await client.get("/api/v1/me", headers=bearer(token)))
        assert len(app_state(app).credential_cache.kept) == 0
        async with app_state(app).database.session() as session:
            await session.execute(delete(ApiToken))
            await session.commit()
        await failed(
            await client.get("/api/v1/me", headers=bearer(token)), 401, "GET", "/api/v1/me"
        )


async def test_the_change_listeners_watch_only_their_own_apps_sessions(
    serve_app, redis_url
) -> None:
    """Two apps in one process (as in tests): the one with the cache flags its own sessions; a
    rename through the other app's database (no cache) flags nothing, and no Session class
    but the cache's database's own is watched."""
    from sqlalchemy import event
    from sqlalchemy.orm import Session

    from app.credentials.credential_cache import CREDENTIALS_CHANGED, _flag_changed_rows
    from app.models import User

    async with serve_app(redis_url=redis_url) as cached, serve_app() as plain:
        alice = await make_user(cached, "alice", password="alice-password")
        flags = {}
        for name, app in (("cached", cached), ("plain", plain)):
            async with app_state(app).database.session() as session:
                user = await session.get(User, alice.id)
                user.name = f"alice-{name}"
                await session.flush()
                flags[name] = session.info.get(CREDENTIALS_CHANGED, False)
                await session.commit()
        assert flags == {"cached": True, "plain": False}
        assert event.contains(
            app_state(cached).database.session_class, "before_flush", _flag_changed_rows
        )
        assert not event.contains(Session, "before_flush", _flag_changed_rows)
