"""`/api/v1/tokens`: bearer tokens for API clients."""

from __future__ import annotations

from quart import Blueprint, Response
from quart_schema import tag

from app.api.openapi import IssuedToken, responds
from app.auth.identity import require_identity, unauthorized
from app.envelope import succeed
from app.services import tokens as token_service
from app.state import database, settings

blueprint = Blueprint("tokens", __name__)


@blueprint.post("/tokens")
@responds(IssuedToken, secured=True)
@tag(["auth"])
async def issue_token() -> Response:
    """Exchange Basic credentials (or a logged-in session) for a bearer token.

    `data` is `{"token": str, "expires_in": seconds}`. 401 without valid credentials; 429 with
    `Retry-After` once the address or the account has used its budget of failed attempts
    (`AUTH_ADDRESS_RATE_LIMIT`, `AUTH_RATE_LIMIT`; counted when the Basic credentials are checked).
    """
    identity = require_identity()
    if identity.method == "bearer":
        raise unauthorized("Authorization: use Basic credentials (not a token) to obtain a token")
    ttl = settings().token_ttl_seconds
    async with database().session() as session:
        token = await token_service.issue_token(session, identity.user_id, ttl_seconds=ttl)
    return succeed({"token": token, "expires_in": ttl})


@blueprint.delete("/tokens")
@responds(str, secured=True)
@tag(["auth"])
async def revoke_token() -> Response:
    """Revoke the bearer token this request is authenticated with, on every worker at once."""
    identity = require_identity()
    if identity.method != "bearer" or identity.credential is None:
        raise unauthorized("Authorization: send the Bearer token to revoke")
    async with database().session() as session:
        await token_service.revoke_token(session, identity.credential)
    return succeed("successfully revoked.")
