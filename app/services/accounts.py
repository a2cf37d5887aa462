"""Finding accounts by name. Names are unique case-insensitively (`models.name_key`), and no
two look alike (`names.skeleton`)."""

from __future__ import annotations

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from app.models import User, name_key


async def find_by_name(session: AsyncSession, name: str) -> User | None:
    """The user whose name equals `name` case-insensitively, else None (one indexed query)."""
    return await session.scalar(select(User).where(User.name_key == name_key(name)))


async def taken_skeletons(session: AsyncSession, skeletons: list[str]) -> set[str]:
    """Which of the skeletons (`names.skeleton(name)`) are accounts' names' (one Core query):
    a nickname with one of them is, or looks like, an account's name."""
    connection = await session.connection()
    found = await connection.scalars(
        select(User.name_skeleton).where(User.name_skeleton.in_(skeletons))
    )
    return set(found)


async def replace_password_hash(session: AsyncSession, user_id: str, old: str, new: str) -> bool:
    """Store `new` (the same password, hashed with today's parameters) where the user's hash
    is still `old`: a password changed meanwhile is kept. Whether it was stored. Commits. A
    Core statement: the password is the same, so no credential changes (no epoch advance)."""
    connection = await session.connection()
    result = await connection.execute(
        update(User).where(User.id == user_id, User.password_hash == old).values(password_hash=new)
    )
    await session.commit()
    return bool(result.rowcount)
