"""Who is making this request: Basic, Bearer or the session cookie, checked once per request.

`identify_request` runs before every request. With an `Authorization` header the credentials
must be right (else 401, even on reads); without one, a logged-in session identifies the user.
An identified user is marked online here, and nowhere else.

Every credential check reports to the `CredentialGuard` (rate_limit.py): failures are limited
per client address and per account, and a password is checked only while both have budget.
Sessions are server-side records (`services.tokens`, kind "session"): the signed cookie holds
only the session's secret, so logout and revocation end a session for every worker at once.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from quart import current_app, g, request, session, websocket
from sqlalchemy.exc import SQLAlchemyError
from werkzeug.datastructures import Authorization, WWWAuthenticate
from werkzeug.exceptions import Unauthorized

from app import state
from app.credentials.rate_limit import CredentialGuard
from app.credentials.verified_passwords import VerifiedPasswords
from app.db import DatabaseTimeoutError
from app.models import TOKEN_KIND_BEARER, TOKEN_KIND_SESSION, User
from app.passwords import hash_password, needs_rehash, verify_password
from app.presence import PresenceRecorder
from app.services import accounts, tokens
from app.services.permissions import Actor

log = logging.getLogger(__name__)

SESSION_KEY = "sid"  # the session cookie's field holding the session secret


@dataclass(frozen=True, slots=True)
class Identity:
    """The request's user, and how it was authenticated: "basic", "bearer" or "session".
    `credential` is the bearer token or the session secret (None for Basic)."""

    actor: Actor
    method: str
    credential: str | None = None

    @classmethod
    def of(cls, user: User, method: str, credential: str | None = None) -> Identity:
        return cls(Actor(user.id, user.name, user.role), method, credential)

    @property
    def user_id(self) -> str:
        return self.actor.user_id


class Challenge(WWWAuthenticate):
    """A `WWW-Authenticate` challenge whose parameters are always quoted strings: RFC 7235
    §2.2 has a sender generate the realm as a quoted-string only (werkzeug leaves a token
    unquoted: `realm=quart-framework`), and clients compare it so (Flask-APScheduler's tests:
    `Basic realm="Authentication Required"`)."""

    def to_header(self) -> str:
        parameters = ", ".join(
            f'{name}="{_quoted(value or "")}"' for name, value in self.parameters.items()
        )
        scheme = self.type.capitalize()
        return f"{scheme} {parameters}" if parameters else scheme

    def __str__(self) -> str:
        return self.to_header()


def _quoted(value: str) -> str:
    """`value` as the inside of an HTTP quoted-string (RFC 9110 §5.6.4)."""
    return value.replace("\\", "\\\\").replace('"', '\\"')


def unauthorized(message: str) -> Unauthorized:
    """A 401 that names the accepted schemes in `WWW-Authenticate` (RFC 7235), in the realm
    `AUTH_REALM`."""
    realm = state.settings().auth_realm
    return Unauthorized(
        description=message,
        www_authenticate=[
            Challenge("basic", {"realm": realm, "charset": "UTF-8"}),
            Challenge("bearer", {"realm": realm}),
        ],
    )


def _client_address() -> str:
    if websocket:
        return websocket.remote_addr or "-"
    return request.remote_addr or "-"


async def authenticate_password(name: str, password: str) -> User | None:
    """The user named `name` (case-insensitively) if `password` is theirs, else None.

    Raises `TooManyAttempts` (429) when the client address or the account has used its budget
    of failures; a wrong name costs the same time as a wrong password.
    """
    guard: CredentialGuard = state.credential_guard()
    verified: VerifiedPasswords = state.verified_passwords()
    address = _client_address()
    async with state.database().session() as db:
        user = await accounts.find_by_name(db, name)
    if user is not None and verified.matches(name, password, user.password_hash):
        return user
    async with guard.password_check(address, name):
        if await verify_password(user.password_hash if user else None, password):
            assert user is not None and user.password_hash is not None
            if needs_rehash(user.password_hash):
                await _upgrade_password_hash(user, password)
            verified.remember(name, password, user.password_hash)
            return user
        await guard.record_failure(address, name)
    return None


async def _upgrade_password_hash(user: User, password: str) -> None:
    """Hash the password again with today's Argon2 parameters (after a successful check, the
    only time the password is known). A failure to store it is logged, not the login's."""
    old = user.password_hash
    assert old is not None
    new = await hash_password(password)
    try:
        async with state.database().session() as db:
            if await accounts.replace_password_hash(db, user.id, old, new):
                user.password_hash = new
                log.info("password hash of user %s upgraded to the current parameters", user.id)
    except (DatabaseTimeoutError, SQLAlchemyError) as error:
        log.warning("password hash of user %s not upgraded: %s", user.id, type(error).__name__)


async def _from_authorization_header(credentials: Authorization | None) -> Identity:
    if credentials is None:
        raise unauthorized("Authorization: malformed header; use Basic or Bearer")
    if credentials.type == "basic":
        user = await authenticate_password(credentials.username or "", credentials.password or "")
        if user is None:
            raise unauthorized("Authorization: wrong user name or password")
        return Identity.of(user, "basic")
    if credentials.type == "bearer" and credentials.token:
        return await _from_bearer_token(credentials.token)
    raise unauthorized(f"Authorization: unsupported scheme {credentials.type!r}")


async def credential_owner(secret: str, kind: str) -> Actor | None:
    """The owner of the unexpired, unrevoked credential `secret` of `kind`, else None: from
    this worker's credential cache while Redis' epoch allows (one GET), else the database."""
    cache = state.app_state().credential_cache
    epoch = await cache.current_epoch() if cache is not None else None
    digest = tokens.token_digest(secret)
    if cache is not None and epoch is not None:
        actor = cache.lookup(digest, kind, epoch)
        if actor is not None:
            return actor
    async with state.database().session() as db:
        found = await tokens.find_credential(db, secret, kind=kind)
    if found is None:
        return None
    user, expires_at = found
    actor = Actor(user.id, user.name, user.role)
    if cache is not None and epoch is not None:
        cache.keep(digest, kind, actor, expires_at.timestamp(), epoch)
    return actor


async def _from_bearer_token(token: str) -> Identity:
    actor = await credential_owner(token, TOKEN_KIND_BEARER)
    if actor is None:
        guard: CredentialGuard = state.credential_guard()
        await guard.ensure_allowed(_client_address())  # 429 once this address is over
        await guard.record_failure(_client_address())
        raise unauthorized("Authorization: the token is unknown, expired or revoked")
    return Identity(actor, "bearer", token)


async def _from_session() -> Identity | None:
    secret = session.get(SESSION_KEY)
    if not isinstance(secret, str):
        return None
    actor = await credential_owner(secret, TOKEN_KIND_SESSION)
    if actor is None:  # logged out elsewhere, revoked, expired, or the account was deleted
        session.pop(SESSION_KEY, None)
        return None
    return Identity(actor, "session", secret)


View = TypeVar("View", bound=Callable[..., Any])


def without_user_identity(view: View) -> View:
    """Mark a route whose `Authorization` header is not a user's credential (e.g. `/metrics`
    with its own bearer token): `identify_request` leaves it anonymous."""
    view.without_user_identity = True  # type: ignore[attr-defined]
    return view


async def identify_request() -> None:
    """Set `g.identity` (None for anonymous requests) and mark the user online."""
    g.identity = identity = None
    this_request = request._get_current_object()  # type: ignore[attr-defined]  # one lookup
    headers = this_request.headers
    if "Authorization" in headers:
        view = current_app.view_functions.get(this_request.endpoint or "")
        if getattr(view, "without_user_identity", False):
            return
        identity = await _from_authorization_header(this_request.authorization)
    elif "Cookie" in headers and SESSION_KEY in session:
        identity = await _from_session()
    if identity is not None:
        g.identity = identity
        recorder: PresenceRecorder = state.presence()
        await recorder.mark(identity.user_id)


async def identify_websocket() -> None:
    """`identify_request` for a websocket handshake. Browsers cannot set headers on a websocket,
    so a token may also come as `?token=`; the session cookie works as for pages."""
    g.identity = None
    token = websocket.args.get("token")
    if "Authorization" in websocket.headers:
        g.identity = await _from_authorization_header(websocket.authorization)
    elif token:
        g.identity = await _from_bearer_token(token)
    elif SESSION_KEY in session:
        g.identity = await _from_session()
    if g.identity is not None:
        await state.presence().mark(g.identity.user_id)


def current_identity() -> Identity | None:
    identity: Identity | None = g.get("identity")
    return identity


def require_identity() -> Identity:
    """The request's user; raises 401 (with `WWW-Authenticate`) for anonymous requests."""
    identity = current_identity()
    if identity is None:
        raise unauthorized("authentication required: log in, or send Basic or Bearer credentials")
    return identity


async def login_session(user: User) -> None:
    """Start a fresh server-side session for `user`, lasting PERMANENT_SESSION_LIFETIME, and
    put its secret in the (new) signed cookie. A session of the previous cookie is ended."""
    await logout_session()
    lifetime = int(current_app.permanent_session_lifetime.total_seconds())
    async with state.database().session() as db:
        secret = await tokens.start_session(db, user.id, ttl_seconds=lifetime)
    session[SESSION_KEY] = secret
    session.permanent = True


async def logout_session() -> None:
    """End this cookie's session for every worker (its record is deleted) and clear the cookie."""
    secret = session.get(SESSION_KEY)
    if isinstance(secret, str):
        async with state.database().session() as db:
            await tokens.revoke_token(db, secret)
    session.clear()
