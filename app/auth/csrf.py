"""Cross-site request forgery: a state-changing request that only the session cookie
authenticates must come from this site.

The rule (docs/security.md), run after `identify_request` on every request:
- safe methods (GET, HEAD, OPTIONS) pass; so does a request with an `Authorization` header
  (Basic or Bearer: a foreign page cannot make a browser send those);
- an unsafe request authenticated by the session cookie, and every `POST /login` (login CSRF),
  passes only when it proves it is same-origin: an `Origin` header of this site (or one of
  `ALLOWED_ORIGINS`), else `Sec-Fetch-Site: same-origin` (or `none`, typed by the user), else
  the session's CSRF token in the `csrf_token` form field or the `X-CSRF-Token` header (what
  old browsers that send neither header fall back on; every form of this site carries it);
- anything else is 403 in the envelope. `POST /login` from a client that sends no `Origin`, no
  `Sec-Fetch-Site` and no token (a script, not a browser) is let through: it carries no cookie
  an attacker could ride on.

OWASP's CSRF Prevention Cheat Sheet: "Verifying Origin with standard headers", "Fetch
Metadata headers" and "Synchronizer token pattern".
"""

from __future__ import annotations

import hmac
import secrets
from urllib.parse import urlsplit

from quart import request, session
from werkzeug.exceptions import Forbidden

from app import state
from app.auth.identity import current_identity

SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
CSRF_SESSION_KEY = "csrf"
CSRF_FIELD = "csrf_token"
CSRF_HEADER = "X-CSRF-Token"
LOGIN_PATH = "/login"


def same_origin(origin: str, *, host: str, scheme: str) -> bool:
    """Whether `origin` (an `Origin` header) is scheme and host of this request."""
    parts = urlsplit(origin.rstrip("/").lower())
    same_scheme = {"ws": "http", "wss": "https"}.get(scheme, scheme)
    return parts.scheme == same_scheme and parts.netloc == host.lower()


def csrf_token() -> str:
    """This session's CSRF token, made on first use (templates put it in every form)."""
    token = session.get(CSRF_SESSION_KEY)
    if not isinstance(token, str):
        token = session[CSRF_SESSION_KEY] = secrets.token_urlsafe(32)
    return token


async def _token_matches() -> bool:
    expected = session.get(CSRF_SESSION_KEY)
    if not isinstance(expected, str):
        return False
    sent = request.headers.get(CSRF_HEADER)
    if sent is None and request.mimetype in (
        "application/x-www-form-urlencoded",
        "multipart/form-data",
    ):
        sent = (await request.form).get(CSRF_FIELD)
    return sent is not None and hmac.compare_digest(sent, expected)


async def check_csrf() -> None:
    """Raise `Forbidden` (403) for a cross-site, cookie-authenticated, state-changing request."""
    this_request = request._get_current_object()  # type: ignore[attr-defined]  # one lookup
    if this_request.method in SAFE_METHODS or "Authorization" in this_request.headers:
        return
    identity = current_identity()
    by_cookie = identity is not None and identity.method == "session"
    if not by_cookie and request.path != LOGIN_PATH:
        return
    origin = request.headers.get("Origin")
    if origin is not None and origin != "null":
        allowed = state.settings().allowed_origins
        if same_origin(origin, host=request.host, scheme=request.scheme) or (
            origin.rstrip("/").lower() in {entry.lower() for entry in allowed}
        ):
            return
        raise Forbidden("Origin: cross-site requests with the session cookie are refused")
    fetch_site = request.headers.get("Sec-Fetch-Site")
    if fetch_site in ("same-origin", "none"):
        return
    if await _token_matches():
        return
    if fetch_site is None and origin is None and not by_cookie:
        return  # POST /login from a non-browser client: nothing to forge
    raise Forbidden(
        f"{CSRF_FIELD}: a same-origin request or this session's CSRF token is required "
        f"(reload the page; API clients use Basic or Bearer)"
    )
