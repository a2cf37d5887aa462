"""Representation versions (the `version` columns): what If-Match compares, and the bumps that
keep a blog's version honest when what it shows of its owner or its tags changes.

A blog's JSON shows its owner's name and role and its tags' names. Their changes raise the
version of every blog that shows them (one UPDATE), so a blog's ETag is its row's version
alone and a conditional GET (If-None-Match) needs no read of the owner or the tags.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from app.errors import ChangedMeanwhileError, NotFoundError, PreconditionFailedError
from app.models import Blog, Tag, User, blog_tags


@dataclass(frozen=True, slots=True)
class Precondition:
    """If-Match as a write sees it: the versions it may replace; `None` for `*` (any)."""

    versions: frozenset[int] | None

    def check(self, current: int, what: str) -> None:
        """Raises `PreconditionFailedError` unless `current` is one of the versions."""
        if self.versions is not None and current not in self.versions:
            raise PreconditionFailedError(
                f"If-Match: the {what} changed since that ETag (now {current}); read it again"
            )


def stale_write_error(precondition: Precondition | None, what: str) -> Exception:
    """The error of a write whose row changed between its read and its UPDATE (SQLAlchemy's
    version counter matched no row): 412 under If-Match, else 409."""
    if precondition is not None:
        return PreconditionFailedError(f"If-Match: the {what} changed while this write ran")
    return ChangedMeanwhileError(
        f"the {what} was changed by another request meanwhile; read it again and retry"
    )


async def check_locked_version(
    session: AsyncSession,
    model: type[User] | type[Tag],
    object_id: str,
    precondition: Precondition,
    not_found: str,
) -> None:
    """Lock the row of `model` `object_id` for this transaction (a DELETE follows) and check
    its version. Raises `NotFoundError` (`not_found`) or `PreconditionFailedError`."""
    version = await session.scalar(
        select(model.version).where(model.id == object_id).with_for_update()
    )
    if version is None:
        raise NotFoundError(not_found)
    precondition.check(version, model.__name__.lower())


async def bump_blogs_of_owner(session: AsyncSession, user_id: str) -> None:
    """Raise the version of every blog `user_id` owns (their owner's name or role changed)."""
    await session.execute(
        update(Blog)
        .where(Blog.user_id == user_id)
        .values(version=Blog.version + 1)
        .execution_options(synchronize_session=False)
    )


async def bump_blogs_tagged(session: AsyncSession, tag_id: str) -> None:
    """Raise the version of every blog that carries `tag_id` (its name changed, or it goes)."""
    tagged = select(blog_tags.c.blog_id).where(blog_tags.c.tag_id == tag_id)
    await session.execute(
        update(Blog)
        .where(Blog.id.in_(tagged))
        .values(version=Blog.version + 1)
        .execution_options(synchronize_session=False)
    )
