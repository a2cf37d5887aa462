"""Tags: create, read, rename and delete; deleting a tag unlinks it from its blogs (DB cascade).

Writes flush; the caller commits (`app.api.idempotency.commit_write`)."""

from __future__ import annotations

from sqlalchemy import Connection, bindparam, delete, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import selectinload
from sqlalchemy.orm.exc import StaleDataError

from app.errors import NotFoundError
from app.models import Blog, Tag
from app.services.pagination import Page, paginate
from app.services.permissions import Actor, ensure_admin
from app.services.rows import rowcount
from app.services.versions import (
    Precondition,
    bump_blogs_tagged,
    check_locked_version,
    stale_write_error,
)
from app.services.views import TagView

TAG_NOT_FOUND = "Tag's id does not exist."


async def create_tag(session: AsyncSession, *, name: str) -> Tag:
    """Insert a tag (names need not be unique, as in the original)."""
    tag = Tag(name=name)
    session.add(tag)
    await session.flush()
    return tag


async def list_tags(
    session: AsyncSession, *, limit: int, offset: int, after: str | None = None
) -> Page[Tag]:
    """Tags in insertion order (after the id `after`, when given)."""
    return await paginate(
        session,
        select(Tag).order_by(Tag.id),
        limit=limit,
        offset=offset,
        after=None if after is None else Tag.id > after,
    )


TAG_VIEW_QUERY = select(Tag.id, Tag.name, Tag.version).where(Tag.id == bindparam("tag_id"))


def get_tag_view(connection: Connection, tag_id: str) -> TagView:
    """The tag `tag_id` as plain values (one Core query; run by `Database.read()`). Raises
    `NotFoundError`."""
    row = connection.execute(TAG_VIEW_QUERY, {"tag_id": tag_id}).first()
    if row is None:
        raise NotFoundError(TAG_NOT_FOUND)
    return TagView(row.id, row.name, row.version)


async def get_tag(session: AsyncSession, tag_id: str) -> Tag:
    """The tag `tag_id`. Raises `NotFoundError`."""
    tag = await session.get(Tag, tag_id)
    if tag is None:
        raise NotFoundError(TAG_NOT_FOUND)
    return tag


async def get_tag_with_blogs(session: AsyncSession, tag_id: str) -> Tag:
    """The tag with its blogs (each with owner and tags) loaded in 4 queries.
    Raises `NotFoundError`. The original always answered `blogs: []` here."""
    tag = await session.scalar(
        select(Tag)
        .where(Tag.id == tag_id)
        .options(selectinload(Tag.blogs).options(selectinload(Blog.owner), selectinload(Blog.tags)))
    )
    if tag is None:
        raise NotFoundError(TAG_NOT_FOUND)
    return tag


async def rename_tag(
    session: AsyncSession,
    tag_id: str,
    *,
    name: str,
    actor: Actor | None = None,
    precondition: Precondition | None = None,
) -> Tag:
    """Replace the tag's name; the blogs carrying it get a new version (they show the name).
    Raises `NotFoundError`, `ForbiddenError` for a non-admin, `PreconditionFailedError` when
    the tag is not at a version `precondition` names, `ChangedMeanwhileError` when another
    request changed it during this one."""
    tag = await get_tag(session, tag_id)
    ensure_admin(actor, "rename tags")
    if precondition is not None:
        precondition.check(tag.version, "tag")
    renamed = tag.name != name
    tag.name = name
    try:
        await session.flush()
    except StaleDataError as error:
        await session.rollback()
        raise stale_write_error(precondition, "tag") from error
    if renamed:
        await bump_blogs_tagged(session, tag_id)
    return tag


async def delete_tag(
    session: AsyncSession,
    tag_id: str,
    *,
    actor: Actor | None = None,
    precondition: Precondition | None = None,
) -> None:
    """Delete the tag; its links to blogs go with it, and those blogs get a new version.
    Raises `NotFoundError`, `ForbiddenError` for a non-admin, or `PreconditionFailedError`."""
    if actor is not None and not actor.is_admin:
        await get_tag(session, tag_id)
        ensure_admin(actor, "delete tags")
    if precondition is not None:
        await check_locked_version(session, Tag, tag_id, precondition, TAG_NOT_FOUND)
    await bump_blogs_tagged(session, tag_id)
    result = await session.execute(delete(Tag).where(Tag.id == tag_id))
    if rowcount(result) == 0:
        raise NotFoundError(TAG_NOT_FOUND)
