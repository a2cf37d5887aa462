"""Who is making this request: Basic, Bearer or the session cookie, checked once per request.

`identify_request` runs before every request. With an `Authorization` header the credentials
must be right (else 401, even on reads); without one, a logged-in session identifies the user.
An identified user is marked online here, and nowhere else.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from quart import current_app, g, request, session, websocket
from werkzeug.datastructures import Authorization, WWWAuthenticate
from werkzeug.exceptions import Unauthorized

from app.models import User
from app.presence import PresenceRecorder
from app.services import accounts, tokens
from app.services.permissions import Actor

log = logging.getLogger(__name__)

REALM = "quart-framework"
SESSION_USER_KEY = "user_id"


@dataclass(frozen=True, slots=True)
class Identity:
    """The request's user, and how it was authenticated: "basic", "bearer" or "session"."""

    actor: Actor
    method: str
    token: str | None = None

    @classmethod
    def of(cls, user: User, method: str, token: str | None = None) -> Identity:
        return cls(Actor(user.id, user.name, user.role), method, token)

    @property
    def user_id(self) -> str:
        return self.actor.user_id


def unauthorized(message: str) -> Unauthorized:
    """A 401 that names the accepted schemes in `WWW-Authenticate` (RFC 7235)."""
    return Unauthorized(
        description=message,
        www_authenticate=[
            WWWAuthenticate("basic", {"realm": REALM, "charset": "UTF-8"}),
            WWWAuthenticate("bearer", {"realm": REALM}),
        ],
    )


async def _from_authorization_header(credentials: Authorization | None) -> Identity:
    if credentials is None:
        raise unauthorized("Authorization: malformed header; use Basic or Bearer")
    database = current_app.extensions["database"]
    async with database.session() as db:
        if credentials.type == "basic":
            user = await accounts.user_with_password(
                db, credentials.username or "", credentials.password or ""
            )
            if user is None:
                raise unauthorized("Authorization: wrong user name or password")
            return Identity.of(user, "basic")
        if credentials.type == "bearer" and credentials.token:
            user = await tokens.user_for_token(db, credentials.token)
            if user is None:
                raise unauthorized("Authorization: the token is unknown, expired or revoked")
            return Identity.of(user, "bearer", credentials.token)
    raise unauthorized(f"Authorization: unsupported scheme {credentials.type!r}")


async def _from_session() -> Identity | None:
    user_id = session.get(SESSION_USER_KEY)
    if not isinstance(user_id, str):
        return None
    async with current_app.extensions["database"].session() as db:
        user = await db.get(User, user_id)
    if user is None:  # the account was deleted since login
        session.clear()
        return None
    return Identity.of(user, "session")


async def identify_request() -> None:
    """Set `g.identity` (None for anonymous requests) and mark the user online."""
    g.identity = None
    if "Authorization" in request.headers:
        g.identity = await _from_authorization_header(request.authorization)
    elif SESSION_USER_KEY in session:
        g.identity = await _from_session()
    if g.identity is not None:
        recorder: PresenceRecorder = current_app.extensions["presence"]
        await recorder.mark(g.identity.user_id)


async def identify_websocket() -> None:
    """`identify_request` for a websocket handshake. Browsers cannot set headers on a websocket,
    so a token may also come as `?token=`; the session cookie works as for pages."""
    g.identity = None
    token = websocket.args.get("token")
    if "Authorization" in websocket.headers:
        g.identity = await _from_authorization_header(websocket.authorization)
    elif token:
        g.identity = await _from_authorization_header(Authorization("bearer", token=token))
    elif SESSION_USER_KEY in session:
        g.identity = await _from_session()
    if g.identity is not None:
        await current_app.extensions["presence"].mark(g.identity.user_id)


def current_identity() -> Identity | None:
    return g.get("identity")


def require_identity() -> Identity:
    """The request's user; raises 401 (with `WWW-Authenticate`) for anonymous requests."""
    identity = current_identity()
    if identity is None:
        raise unauthorized("authentication required: log in, or send Basic or Bearer credentials")
    return identity


def login_session(user: User) -> None:
    """Start a fresh, permanent (PERMANENT_SESSION_LIFETIME) session for `user`."""
    session.clear()
    session[SESSION_USER_KEY] = user.id
    session.permanent = True


def logout_session() -> None:
    session.clear()
