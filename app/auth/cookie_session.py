"""Quart's signed-cookie session with its signing serializer built once, not per request.

Quart's `SecureCookieSessionInterface` builds an itsdangerous serializer for every request
(and every websocket handshake) before it looks for the cookie: about 4% of a worker's time
serving `/healthz` (py-spy, bench/). The serializer depends only on the secret keys, so it is
kept and rebuilt only when they change. A request without the cookie gets its empty session
without a lookup that raises. Cookies, signing and expiry are Quart's, unchanged.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from itsdangerous import URLSafeTimedSerializer
from quart.sessions import SecureCookieSession, SecureCookieSessionInterface

if TYPE_CHECKING:
    from quart import Quart
    from quart.wrappers import BaseRequestWebsocket


class CachedSerializerSessionInterface(SecureCookieSessionInterface):
    """`SecureCookieSessionInterface` with its serializer cached per set of secret keys."""

    def __init__(self) -> None:
        self._keys: tuple[object, ...] | None = None
        self._serializer: URLSafeTimedSerializer | None = None

    def get_signing_serializer(self, app: Quart) -> URLSafeTimedSerializer | None:
        keys = (app.secret_key, *(app.config["SECRET_KEY_FALLBACKS"] or ()))
        if keys != self._keys:
            self._serializer = super().get_signing_serializer(app)
            self._keys = keys
        return self._serializer

    async def open_session(
        self, app: Quart, request: BaseRequestWebsocket
    ) -> SecureCookieSession | None:
        # Without the cookie, the empty session Quart would give, without its lookup's
        # exception (werkzeug's MultiDict.get raises and catches for a missing key).
        if self.get_cookie_name(app) not in request.cookies:
            return None if self.get_signing_serializer(app) is None else self.session_class()
        return await super().open_session(app, request)
