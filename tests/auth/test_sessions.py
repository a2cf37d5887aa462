"""Browser login: the session cookie, its flags and lifetime, /api/v1/me, logout."""

from __future__ import annotations

from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from http.cookies import SimpleCookie

import pytest

from tests.auth_helpers import SAME_ORIGIN, make_user
from tests.helpers import failed, ok


@pytest.fixture
async def app(serve_app):
    async with serve_app() as app:
        yield app


def lifetime_seconds(morsel) -> float:
    """Seconds from now until the cookie's `Expires`."""
    expires = parsedate_to_datetime(morsel["expires"])
    return (expires - datetime.now(UTC)).total_seconds()


def session_cookie(response) -> SimpleCookie:
    header = next(h for h in response.headers.get_all("Set-Cookie") if h.startswith("session="))
    cookie = SimpleCookie()
    cookie.load(header)
    return cookie


async def test_json_login_sets_a_signed_httponly_lax_cookie(app, client) -> None:
    user = await make_user(app, "alice", password="alice-password")
    response = await client.post("/login", json={"name": "alice", "password": "alice-password"})
    assert await ok(response) == {"id": user.id, "name": "alice", "role": 0}
    morsel = session_cookie(response)["session"]
    assert morsel["httponly"] is True
    assert morsel["samesite"] == "Lax"
    assert not morsel["secure"]  # testing: not secure unless SESSION_COOKIE_SECURE
    assert abs(lifetime_seconds(morsel) - 7 * 86400) < 60  # PERMANENT_SESSION_LIFETIME default
    assert "alice" not in morsel.value and "." in morsel.value  # signed, opaque
    assert await ok(await client.get("/api/v1/me")) == {"id": user.id, "name": "alice", "role": 0}


async def test_secure_flag_and_lifetime_follow_settings(serve_app) -> None:
    async with serve_app(session_cookie_secure=True, permanent_session_lifetime=600) as app:
        await make_user(app, "alice", password="alice-password")
        response = await app.test_client().post(
            "/login", json={"name": "alice", "password": "alice-password"}
        )
        morsel = session_cookie(response)["session"]
        assert morsel["secure"] is True and abs(lifetime_seconds(morsel) - 600) < 60


def test_cookies_are_secure_by_default_in_production() -> None:
    from app.settings import Settings

    assert Settings(app_env="production", secret_key="x" * 32).secure_cookies is True
    assert Settings(app_env="development").secure_cookies is False


async def test_form_login_redirects_to_a_safe_next(app, client) -> None:
    await make_user(app, "alice", password="alice-password")
    form = {"name": "alice", "password": "alice-password"}
    response = await client.post("/login?next=/chat", form=form)
    assert response.status_code == 303 and response.headers["Location"] == "/chat"
    for hostile in ("https://evil.example/", "//evil.example/x", "javascript:alert(1)"):
        response = await client.post(
            "/login", form=form, query_string={"next": hostile}, headers=SAME_ORIGIN
        )
        assert response.headers["Location"] == "/online", hostile


async def test_wrong_password(app, client) -> None:
    await make_user(app, "alice", password="alice-password")
    response = await client.post("/login", json={"name": "alice", "password": "nope"})
    assert await failed(response, 401, "POST", "/login") == "wrong user name or password"
    assert not any(h.startswith("session=") for h in response.headers.get_all("Set-Cookie"))
    page = await client.post("/login", form={"name": "alice", "password": "nope"})
    assert page.status_code == 401 and "wrong user name or password" in await page.get_data(
        as_text=True
    )


@pytest.mark.parametrize("body", [{}, {"name": "alice"}, {"name": 1, "password": "x"}])
async def test_bad_login_body_is_400(app, client, body) -> None:
    await failed(await client.post("/login", json=body), 400, "POST", "/login")


async def test_login_page_is_a_form(client) -> None:
    response = await client.get("/login")
    html = await response.get_data(as_text=True)
    assert response.status_code == 200
    assert '<form method="post" action="/login"' in html and 'type="password"' in html


async def test_logout_ends_the_session(app, client) -> None:
    await make_user(app, "alice", password="alice-password")
    await ok(await client.post("/login", json={"name": "alice", "password": "alice-password"}))
    await ok(await client.get("/api/v1/me"))
    assert await ok(await client.post("/logout", json={}, headers=SAME_ORIGIN)) == "logged out."
    await failed(await client.get("/api/v1/me"), 401, "GET", "/api/v1/me")
    response = await client.post("/logout", form={}, headers=SAME_ORIGIN)
    assert response.status_code == 303 and response.headers["Location"] == "/login"


async def test_session_of_a_deleted_user_is_anonymous(app, client) -> None:
    user = await make_user(app, "alice", password="alice-password")
    await ok(await client.post("/login", json={"name": "alice", "password": "alice-password"}))
    # self-delete, with the session
    await ok(await client.delete(f"/api/v1/user/{user.id}", headers=SAME_ORIGIN))
    await failed(await client.get("/api/v1/me"), 401, "GET", "/api/v1/me")


async def test_a_forged_cookie_is_ignored(app, client) -> None:
    user = await make_user(app, "alice", password="alice-password")
    client.set_cookie("localhost", "session", f'{{"user_id":"{user.id}"}}')
    await failed(await client.get("/api/v1/me"), 401, "GET", "/api/v1/me")
