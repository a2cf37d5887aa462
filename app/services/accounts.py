"""Finding accounts by name. Names are unique case-insensitively (`models.name_key`)."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from app.models import User, name_key


async def find_by_name(session: AsyncSession, name: str) -> User | None:
    """The user whose name equals `name` case-insensitively, else None (one indexed query)."""
    return await session.scalar(select(User).where(User.name_key == name_key(name)))


async def name_is_taken(session: AsyncSession, name: str) -> bool:
    """Whether an account's name equals `name` case-insensitively."""
    return await session.scalar(select(User.id).where(User.name_key == name_key(name))) is not None
