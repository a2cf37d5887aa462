"""Credentials of a user: API bearer tokens and browser login sessions.

Both are random 256-bit secrets of which only the SHA-256 is stored (`ApiToken`, with a
`kind`). Revoking deletes the row, so every worker and container sees it at the next request:
that is how logout, a password or role change, and an admin's revocation take effect at once.
"""

from __future__ import annotations

import hashlib
import secrets
from datetime import datetime, timedelta

from sqlalchemy import delete, select
from sqlalchemy.ext.asyncio import AsyncSession

from app.models import TOKEN_KIND_BEARER, TOKEN_KIND_SESSION, ApiToken, User, utcnow
from app.services.rows import rowcount


def token_digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


async def issue_token(
    session: AsyncSession, user_id: str, *, ttl_seconds: int, kind: str = TOKEN_KIND_BEARER
) -> str:
    """A new credential of `kind` for `user_id`, valid `ttl_seconds`; returns the secret.
    Also drops the user's expired credentials."""
    now = utcnow()
    token = secrets.token_urlsafe(32)
    await session.execute(
        delete(ApiToken).where(ApiToken.user_id == user_id, ApiToken.expires_at <= now)
    )
    session.add(
        ApiToken(
            token_hash=token_digest(token),
            kind=kind,
            user_id=user_id,
            created_at=now,
            expires_at=now + timedelta(seconds=ttl_seconds),
        )
    )
    await session.commit()
    return token


async def start_session(session: AsyncSession, user_id: str, *, ttl_seconds: int) -> str:
    """A new login session for `user_id`; returns its secret (kept in the signed cookie)."""
    return await issue_token(session, user_id, ttl_seconds=ttl_seconds, kind=TOKEN_KIND_SESSION)


async def find_credential(
    session: AsyncSession, token: str, *, kind: str = TOKEN_KIND_BEARER
) -> tuple[User, datetime] | None:
    """The user owning an unexpired, unrevoked credential `token` of `kind`, and when the
    credential expires (aware UTC); None if there is no such credential (one indexed query)."""
    row = (
        await session.execute(
            select(User, ApiToken.expires_at)
            .join(ApiToken, ApiToken.user_id == User.id)
            .where(
                ApiToken.token_hash == token_digest(token),
                ApiToken.kind == kind,
                ApiToken.expires_at > utcnow(),
            )
        )
    ).first()
    return None if row is None else (row[0], row[1])


async def revoke_token(session: AsyncSession, token: str) -> bool:
    """Delete the credential `token` (a bearer token or a session); whether it existed."""
    result = await session.execute(
        delete(ApiToken).where(ApiToken.token_hash == token_digest(token))
    )
    await session.commit()
    return rowcount(result) > 0


async def revoke_user_credentials(
    session: AsyncSession, user_id: str, *, keep: str | None = None, commit: bool = True
) -> int:
    """Delete every token and session of `user_id` except the credential `keep` (the one the
    request came with, so a user changing their own password stays signed in there).
    Returns how many were revoked."""
    statement = delete(ApiToken).where(ApiToken.user_id == user_id)
    if keep is not None:
        statement = statement.where(ApiToken.token_hash != token_digest(keep))
    result = await session.execute(statement)
    if commit:
        await session.commit()
    return rowcount(result)
