"""Checking a user's name and password."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from app.auth.passwords import verify_password
from app.models import User


async def user_with_password(session: AsyncSession, name: str, password: str) -> User | None:
    """The user named `name` if `password` is theirs, else None (same cost either way)."""
    user = await session.scalar(select(User).where(User.name == name))
    if await verify_password(user.password_hash if user else None, password):
        return user
    return None
