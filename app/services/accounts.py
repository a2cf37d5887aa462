"""Finding accounts by name. Names are unique case-insensitively (`models.name_key`)."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from app.models import User, name_key


async def find_by_name(session: AsyncSession, name: str) -> User | None:
    """The user whose name equals `name` case-insensitively, else None (one indexed query)."""
    return await session.scalar(select(User).where(User.name_key == name_key(name)))


async def taken_name_keys(session: AsyncSession, keys: list[str]) -> set[str]:
    """Which of the name keys (`name_key(name)`) are accounts' (one Core query)."""
    connection = await session.connection()
    found = await connection.scalars(select(User.name_key).where(User.name_key.in_(keys)))
    return set(found)
