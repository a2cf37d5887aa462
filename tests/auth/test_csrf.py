"""app.auth.csrf's rule in process, case by case (the browser flows are in
tests/e2e/test_security.py): `check_csrf` run in a request context with the identity and the
session it would see after `identify_request`."""

from __future__ import annotations

import pytest
from quart import g, session
from werkzeug.exceptions import Forbidden

from app.auth.csrf import CSRF_SESSION_KEY, check_csrf, csrf_token, same_origin
from app.auth.identity import Identity
from app.services.permissions import Actor

TOKEN = "t" * 43
BY_COOKIE = Identity(Actor("u1", "ann", 0), "session", "secret")
BY_TOKEN = Identity(Actor("u1", "ann", 0), "bearer", "token")


@pytest.fixture
async def app(serve_app):
    async with serve_app(allowed_origins="https://app.example") as app:
        yield app


async def verdict(app, method: str, path: str = "/api/v1/tag", *, identity=None, **headers):
    """None when the request passes, else the Forbidden's description."""
    headers = {name.replace("_", "-"): value for name, value in headers.items()}
    async with app.test_request_context(path, method=method, headers=headers):
        g.identity = identity
        session[CSRF_SESSION_KEY] = TOKEN
        try:
            await check_csrf()
        except Forbidden as error:
            return error.description
    return None


@pytest.mark.parametrize("method", ["GET", "HEAD", "OPTIONS"])
async def test_safe_methods_pass(app, method) -> None:
    assert await verdict(app, method, identity=BY_COOKIE, Origin="https://evil.example") is None


async def test_an_authorization_header_passes(app) -> None:
    headers = {"Authorization": "Bearer x", "Origin": "https://evil.example"}
    assert await verdict(app, "POST", identity=BY_TOKEN, **headers) is None


async def test_a_write_without_the_cookie_is_not_csrfs_business(app) -> None:
    assert await verdict(app, "POST", identity=None, Origin="https://evil.example") is None


async def test_a_cookie_write_from_another_origin_is_refused(app) -> None:
    description = await verdict(app, "POST", identity=BY_COOKIE, Origin="https://evil.example")
    assert description is not None and description.startswith("Origin: cross-site")


@pytest.mark.parametrize(
    "origin",
    ["http://localhost", "HTTP://LOCALHOST/", "https://app.example", "https://APP.example/"],
)
async def test_a_cookie_write_from_this_site_or_an_allowed_origin_passes(app, origin) -> None:
    assert await verdict(app, "POST", identity=BY_COOKIE, Origin=origin) is None


@pytest.mark.parametrize(
    ("site", "allowed"),
    [("same-origin", True), ("none", True), ("cross-site", False), ("same-site", False)],
)
async def test_fetch_metadata_without_origin(app, site, allowed) -> None:
    description = await verdict(app, "PUT", identity=BY_COOKIE, Sec_Fetch_Site=site)
    assert (description is None) is allowed


async def test_the_sessions_token_passes_an_old_browser(app) -> None:
    assert await verdict(app, "DELETE", identity=BY_COOKIE, X_CSRF_Token=TOKEN) is None
    wrong = await verdict(app, "DELETE", identity=BY_COOKIE, X_CSRF_Token="x" * 43)
    assert wrong is not None


async def test_an_opaque_origin_is_not_trusted(app) -> None:
    assert await verdict(app, "POST", identity=BY_COOKIE, Origin="null") is not None


async def test_login_is_checked_without_a_cookie_except_from_a_script(app) -> None:
    refused = await verdict(app, "POST", "/login", Origin="https://evil.example")
    assert refused is not None
    assert await verdict(app, "POST", "/login", Sec_Fetch_Site="cross-site") is not None
    assert await verdict(app, "POST", "/login") is None  # no browser headers: a script


def test_same_origin_compares_scheme_and_host() -> None:
    assert same_origin("http://a.example:8000", host="a.example:8000", scheme="http")
    assert same_origin("https://a.example", host="a.example", scheme="wss")
    assert not same_origin("https://a.example", host="a.example", scheme="http")
    assert not same_origin("http://b.example", host="a.example", scheme="http")


async def test_csrf_token_is_made_once_per_session(app) -> None:
    async with app.test_request_context("/"):
        first = csrf_token()
        assert len(first) >= 32 and csrf_token() == first
        assert session[CSRF_SESSION_KEY] == first
