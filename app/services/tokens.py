"""API bearer tokens: random 256-bit secrets; only their SHA-256 is stored.

Revocation deletes the row, so every worker and container sees it at the next request.
"""

from __future__ import annotations

import hashlib
import secrets
from datetime import timedelta

from sqlalchemy import delete, select
from sqlalchemy.ext.asyncio import AsyncSession

from app.models import ApiToken, User, utcnow


def token_digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


async def issue_token(session: AsyncSession, user_id: str, *, ttl_seconds: int) -> str:
    """A new token for `user_id`, valid `ttl_seconds`. Also drops the user's expired tokens."""
    now = utcnow()
    token = secrets.token_urlsafe(32)
    await session.execute(
        delete(ApiToken).where(ApiToken.user_id == user_id, ApiToken.expires_at <= now)
    )
    session.add(
        ApiToken(
            token_hash=token_digest(token),
            user_id=user_id,
            created_at=now,
            expires_at=now + timedelta(seconds=ttl_seconds),
        )
    )
    await session.commit()
    return token


async def user_for_token(session: AsyncSession, token: str) -> User | None:
    """The user owning an unexpired, unrevoked `token`, else None (one indexed query)."""
    return await session.scalar(
        select(User)
        .join(ApiToken, ApiToken.user_id == User.id)
        .where(ApiToken.token_hash == token_digest(token), ApiToken.expires_at > utcnow())
    )


async def revoke_token(session: AsyncSession, token: str) -> bool:
    """Delete `token`; whether it existed."""
    result = await session.execute(
        delete(ApiToken).where(ApiToken.token_hash == token_digest(token))
    )
    await session.commit()
    return result.rowcount > 0
