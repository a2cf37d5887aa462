"""Checks made before a websocket is accepted: the `Origin` header and the client's identity."""

from __future__ import annotations

from quart import websocket
from werkzeug.exceptions import Forbidden

from app import state
from app.auth.csrf import same_origin


def origin_allowed(origin: str | None, *, host: str, scheme: str, allowed: list[str]) -> bool:
    """Whether a handshake's `Origin` may connect.

    No `Origin` (a non-browser client, which cross-site pages cannot drive) is allowed. With
    `ALLOWED_ORIGINS` empty only the same origin is (scheme and host as the request saw them);
    otherwise only the listed origins are.
    """
    if origin is None:
        return True
    if allowed:
        return origin.rstrip("/").lower() in {entry.lower() for entry in allowed}
    return same_origin(origin, host=host, scheme=scheme)


def check_origin() -> None:
    """Refuse the handshake (HTTP 403) from a page of another origin."""
    settings = state.settings()
    if not origin_allowed(
        websocket.headers.get("Origin"),
        host=websocket.host,
        scheme=websocket.scheme,
        allowed=settings.allowed_origins,
    ):
        raise Forbidden("Origin: not allowed to open websockets here")
