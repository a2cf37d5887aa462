"""Users: create, read, replace and delete; deleting a user deletes their blogs (DB cascade).

Writes take the acting user (`actor`, None when `API_AUTH=open`); see `permissions` for the rules.
Passwords are optional and write-only: stored as Argon2id hashes, never returned. Writes flush;
the caller commits (`app.api.idempotency.commit_write`).
"""

from __future__ import annotations

from sqlalchemy import bindparam, delete, select
from sqlalchemy.engine import Connection
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import selectinload
from sqlalchemy.orm.exc import StaleDataError

from app.errors import ConflictError, ForbiddenError, NotFoundError
from app.models import Blog, User, name_key
from app.names import skeleton
from app.passwords import hash_password
from app.services.pagination import Page, paginate
from app.services.permissions import Actor, ensure_admin, ensure_self_or_admin
from app.services.rows import rowcount
from app.services.tokens import revoke_user_credentials
from app.services.versions import (
    Precondition,
    bump_blogs_of_owner,
    check_locked_version,
    stale_write_error,
)
from app.services.views import UserView

USER_NOT_FOUND = "User's id does not exist."  # the original's wording, kept for its clients


def _name_taken(name: str) -> ConflictError:
    return ConflictError(f"name: a user named {name!r} already exists")


def _looks_taken(name: str, existing: str) -> ConflictError:
    return ConflictError(
        f"name: {name!r} looks like the existing user name {existing!r} (confusable characters)"
    )


async def _ensure_name_free(
    session: AsyncSession, name: str, *, except_id: str | None = None
) -> None:
    """Raises `ConflictError` when another user has `name` (case-insensitively) or a name that
    looks like it (the same confusable skeleton, app.names)."""
    # One indexed lookup: names with one key also share their skeleton (it starts from the key).
    key = name_key(name)
    rows = await session.execute(
        select(User.id, User.name, User.name_key).where(User.name_skeleton == skeleton(name))
    )
    for owner_id, existing, existing_key in rows:
        if owner_id == except_id:
            continue
        raise _name_taken(name) if existing_key == key else _looks_taken(name, existing)


async def _flush_or_conflict(
    session: AsyncSession, name: str, precondition: Precondition | None = None
) -> None:
    # The pre-check above wins nearly always; the unique key settles a race between workers.
    try:
        await session.flush()
    except StaleDataError as error:  # the user changed between its read and this UPDATE
        await session.rollback()
        raise stale_write_error(precondition, "user") from error
    except IntegrityError as error:
        await session.rollback()
        raise _name_taken(name) from error


async def create_user(
    session: AsyncSession,
    *,
    name: str,
    role: int,
    password: str | None = None,
    actor: Actor | None = None,
) -> User:
    """Insert a user. Raises `ForbiddenError` unless `actor` is an admin, `ConflictError` if
    `name` is taken."""
    ensure_admin(actor, "create users")
    await _ensure_name_free(session, name)
    password_hash = await hash_password(password) if password is not None else None
    user = User(name=name, role=role, password_hash=password_hash)
    session.add(user)
    await _flush_or_conflict(session, name)
    return user


async def list_users(
    session: AsyncSession, *, limit: int, offset: int, after: str | None = None
) -> Page[User]:
    """Users in insertion order (after the id `after`, when given)."""
    return await paginate(
        session,
        select(User).order_by(User.id),
        limit=limit,
        offset=offset,
        after=None if after is None else User.id > after,
    )


async def get_user(session: AsyncSession, user_id: str) -> User:
    """The user `user_id`. Raises `NotFoundError`."""
    user = await session.get(User, user_id)
    if user is None:
        raise NotFoundError(USER_NOT_FOUND)
    return user


# Built once: a statement that is the one SQLAlchemy compiled and cached skips re-keying the
# cached result's columns per execution (`_adapt_to_context`: a third of this read's CPU).
USER_VIEW_QUERY = select(User.id, User.name, User.role, User.version).where(
    User.id == bindparam("user_id")
)


def get_user_view(connection: Connection, user_id: str) -> UserView:
    """The user `user_id` as plain values (one Core query; run by `Database.read()`). Raises
    `NotFoundError`."""
    row = connection.execute(USER_VIEW_QUERY, {"user_id": user_id}).first()
    if row is None:
        raise NotFoundError(USER_NOT_FOUND)
    return UserView(row.id, row.name, row.role, row.version)


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


async def replace_user(
    session: AsyncSession,
    user_id: str,
    *,
    name: str,
    role: int,
    password: str | None = None,
    actor: Actor | None = None,
    keep_credential: str | None = None,
    precondition: Precondition | None = None,
) -> User:
    """Replace name and role, and the password when one is given (else it is kept).

    A new password or role ends every session and token of the user but `keep_credential`
    (the one the request came with, when the user changes their own account).

    Raises `NotFoundError`; `ForbiddenError` unless `actor` is this user or an admin, or when a
    non-admin changes a role; `ConflictError` if `name` is another user's;
    `PreconditionFailedError` when the user is not at a version `precondition` names.
    """
    user = await get_user(session, user_id)
    ensure_self_or_admin(actor, user_id, "edit this user")
    if precondition is not None:
        precondition.check(user.version, "user")
    if actor is not None and not actor.is_admin and role != user.role:
        raise ForbiddenError("role: only an admin may change a role")
    await _ensure_name_free(session, name, except_id=user_id)
    credentials_change = password is not None or role != user.role
    if name != user.name or role != user.role:  # their blogs show both
        await bump_blogs_of_owner(session, user_id)
    user.name, user.role = name, role
    if password is not None:
        user.password_hash = await hash_password(password)
    if credentials_change:
        await revoke_user_credentials(session, user_id, keep=keep_credential, commit=False)
    await _flush_or_conflict(session, name, precondition)
    return user


async def revoke_credentials(
    session: AsyncSession, user_id: str, *, actor: Actor | None = None
) -> int:
    """End every session and token of `user_id`; returns how many. Raises `NotFoundError`, or
    `ForbiddenError` unless `actor` is this user or an admin."""
    await get_user(session, user_id)
    ensure_self_or_admin(actor, user_id, "revoke this user's sessions")
    return await revoke_user_credentials(session, user_id)


async def delete_user(
    session: AsyncSession,
    user_id: str,
    *,
    actor: Actor | None = None,
    precondition: Precondition | None = None,
) -> None:
    """Delete the user; the database cascades to their blogs, their blogs' tag links and their
    tokens. Raises `NotFoundError`, `ForbiddenError` unless `actor` is this user or an admin,
    or `PreconditionFailedError`."""
    if actor is not None and not actor.is_admin:
        await get_user(session, user_id)  # 404 before 403: ids are not secrets here
        ensure_self_or_admin(actor, user_id, "delete this user")
    if precondition is not None:
        await check_locked_version(session, User, user_id, precondition, USER_NOT_FOUND)
    result = await session.execute(delete(User).where(User.id == user_id))
    if rowcount(result) == 0:
        raise NotFoundError(USER_NOT_FOUND)
