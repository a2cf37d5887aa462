"""Users: create, read, replace and delete; deleting a user deletes their blogs (DB cascade)."""

from __future__ import annotations

from sqlalchemy import delete, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import selectinload

from app.errors import ConflictError, NotFoundError
from app.models import Blog, User
from app.services.pagination import Page, paginate

USER_NOT_FOUND = "User's id does not exist."  # the original's wording, kept for its clients


def _name_taken(name: str) -> ConflictError:
    return ConflictError(f"name: a user named {name!r} already exists")


async def _ensure_name_free(
    session: AsyncSession, name: str, *, except_id: str | None = None
) -> None:
    owner_id = await session.scalar(select(User.id).where(User.name == name))
    if owner_id is not None and owner_id != except_id:
        raise _name_taken(name)


async def _commit_or_conflict(session: AsyncSession, name: str) -> None:
    # The pre-check above wins nearly always; the unique key settles a race between workers.
    try:
        await session.commit()
    except IntegrityError as error:
        await session.rollback()
        raise _name_taken(name) from error


async def create_user(session: AsyncSession, *, name: str, role: int) -> User:
    """Insert a user. Raises `ConflictError` if `name` is taken."""
    await _ensure_name_free(session, name)
    user = User(name=name, role=role)
    session.add(user)
    await _commit_or_conflict(session, name)
    return user


async def list_users(session: AsyncSession, *, limit: int, offset: int) -> Page[User]:
    """Users in insertion order."""
    return await paginate(session, select(User).order_by(User.id), limit=limit, offset=offset)


async def get_user(session: AsyncSession, user_id: str) -> User:
    """The user `user_id`. Raises `NotFoundError`."""
    user = await session.get(User, user_id)
    if user is None:
        raise NotFoundError(USER_NOT_FOUND)
    return user


async def get_user_with_blogs(session: AsyncSession, user_id: str) -> User:
    """The user with `blogs` (each with owner and tags) loaded in 4 queries. Raises `NotFoundError`."""
    user = await session.scalar(
        select(User)
        .where(User.id == user_id)
        .options(
            selectinload(User.blogs).options(selectinload(Blog.owner), selectinload(Blog.tags))
        )
    )
    if user is None:
        raise NotFoundError(USER_NOT_FOUND)
    return user


async def replace_user(session: AsyncSession, user_id: str, *, name: str, role: int) -> User:
    """Replace name and role. Raises `NotFoundError`, or `ConflictError` if `name` is another's."""
    user = await get_user(session, user_id)
    await _ensure_name_free(session, name, except_id=user_id)
    user.name, user.role = name, role
    await _commit_or_conflict(session, name)
    return user


async def delete_user(session: AsyncSession, user_id: str) -> None:
    """Delete the user; the database cascades to their blogs and those blogs' tag links.
    Raises `NotFoundError`."""
    result = await session.execute(delete(User).where(User.id == user_id))
    if result.rowcount == 0:
        raise NotFoundError(USER_NOT_FOUND)
    await session.commit()
