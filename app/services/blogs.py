"""Blogs: create, read, replace and delete, with their owner and tags.

Fixes of the original (contract §3): an unknown `user_id` or tag id saves nothing; PUT replaces
the tag list instead of appending duplicate links; deleting works whatever the links.

Writes flush and leave the COMMIT to the caller (`app.api.idempotency.commit_write`), which
commits the answer built from the flushed objects with them: no read after the COMMIT, so a
fault after it cannot turn a committed write into a 503.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence

from sqlalchemy import bindparam, delete, func, select
from sqlalchemy.engine import Connection
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import joinedload, selectinload
from sqlalchemy.orm.exc import StaleDataError
from sqlalchemy.orm.strategy_options import _AbstractLoad

from app.errors import InvalidReferenceError, NotFoundError
from app.models import Blog, Tag, User, blog_tags, utcnow
from app.services.pagination import Page
from app.services.permissions import Actor, ensure_self_or_admin
from app.services.rows import rowcount
from app.services.versions import Precondition, stale_write_error
from app.services.views import BlogView, TagView, UserView

BLOG_NOT_FOUND = "Blog's id does not exist."


def _with_owner_and_tags() -> tuple[_AbstractLoad, _AbstractLoad]:
    return (joinedload(Blog.owner), selectinload(Blog.tags))


async def _load_tags(session: AsyncSession, tag_ids: Sequence[str]) -> list[Tag]:
    wanted = list(dict.fromkeys(tag_ids))
    if not wanted:
        return []
    found = {tag.id: tag for tag in await session.scalars(select(Tag).where(Tag.id.in_(wanted)))}
    missing = [tag_id for tag_id in wanted if tag_id not in found]
    if missing:
        raise InvalidReferenceError(f"tags: no tag with id {', '.join(map(repr, missing))}")
    # Tag id order (creation order), the order in which the blog's tags are read back.
    return [found[tag_id] for tag_id in sorted(found)]


async def _flush_or_invalid_reference(
    session: AsyncSession, precondition: Precondition | None = None
) -> None:
    try:
        await session.flush()
    except StaleDataError as error:  # the blog changed between its read and this UPDATE
        await session.rollback()
        raise stale_write_error(precondition, "blog") from error
    except IntegrityError as error:  # the owner or a tag was deleted by another request meanwhile
        await session.rollback()
        raise InvalidReferenceError(
            "user_id or tags: the user or a tag was deleted while the blog was saved"
        ) from error


BLOG_VERSION_QUERY = select(Blog.version).where(Blog.id == bindparam("blog_id"))


def get_blog_version(connection: Connection, blog_id: str) -> int:
    """The blog's version alone (one indexed read; run by `Database.read()`): what a
    conditional GET compares before reading the owner and the tags. Raises `NotFoundError`."""
    version = connection.scalar(BLOG_VERSION_QUERY, {"blog_id": blog_id})
    if version is None:
        raise NotFoundError(BLOG_NOT_FOUND)
    return int(version)


async def get_blog(session: AsyncSession, blog_id: str) -> Blog:
    """The blog with owner and tags (2 queries). Raises `NotFoundError`."""
    blog = await session.scalar(
        select(Blog).where(Blog.id == blog_id).options(*_with_owner_and_tags())
    )
    if blog is None:
        raise NotFoundError(BLOG_NOT_FOUND)
    return blog


# The list's statements, built once: a statement that is the one SQLAlchemy compiled and cached
# skips re-keying the cached result's columns per execution (`_adapt_to_context`).
BLOG_COUNT_QUERY = select(func.count()).select_from(Blog)
_BLOG_ROWS = (
    select(
        Blog.id,
        Blog.title,
        Blog.context,
        Blog.create_time,
        Blog.modify_time,
        User.id,
        User.name,
        User.role,
    )
    .join(User, Blog.user_id == User.id)
    .order_by(Blog.id)
)
BLOG_PAGE_QUERY = _BLOG_ROWS.limit(bindparam("limit")).offset(bindparam("offset"))
BLOG_PAGE_AFTER_QUERY = _BLOG_ROWS.where(Blog.id > bindparam("after")).limit(bindparam("limit"))
BLOG_TAGS_QUERY = (
    select(blog_tags.c.blog_id, Tag.id, Tag.name)
    .join(Tag, Tag.id == blog_tags.c.tag_id)
    .where(blog_tags.c.blog_id.in_(bindparam("blog_ids", expanding=True)))
    .order_by(blog_tags.c.blog_id, Tag.id)
)


def list_blogs(
    connection: Connection, *, limit: int, offset: int, after: str | None = None
) -> Page[BlogView]:
    """Blogs in insertion order (after the id `after`, when given) with owners and tags (tags
    in id order): 3 queries whatever the page size (the count, the blogs with their owners,
    the page's tags); run by `Database.read_snapshot()`, so the three agree."""
    total = connection.scalar(BLOG_COUNT_QUERY)
    if after is None:
        blogs = connection.execute(BLOG_PAGE_QUERY, {"limit": limit, "offset": offset}).all()
    else:
        blogs = connection.execute(BLOG_PAGE_AFTER_QUERY, {"limit": limit, "after": after}).all()
    tags: defaultdict[str, list[TagView]] = defaultdict(list)
    if blogs:
        links = connection.execute(BLOG_TAGS_QUERY, {"blog_ids": [row[0] for row in blogs]})
        for blog_id, tag_id, tag_name in links:
            tags[blog_id].append(TagView(tag_id, tag_name))
    items = [
        BlogView(
            blog_id,
            title,
            context,
            UserView(owner_id, name, role),
            tags[blog_id],
            created,
            modified,
        )
        for blog_id, title, context, created, modified, owner_id, name, role in blogs
    ]
    return Page(items=items, total=total or 0)


async def create_blog(
    session: AsyncSession,
    *,
    title: str,
    context: str,
    user_id: str,
    tag_ids: Sequence[str],
    actor: Actor | None = None,
) -> Blog:
    """Insert a blog owned by `user_id` and linked to `tag_ids` (duplicates ignored); flushed,
    with its owner and tags loaded (3 queries and the INSERTs), not committed.

    Raises `ForbiddenError` when a non-admin `actor` writes under another user's id, and
    `InvalidReferenceError` naming the field when the user or a tag does not exist; nothing is
    saved then.
    """
    ensure_self_or_admin(actor, user_id, "write blogs under this user_id")
    owner = await session.get(User, user_id)
    if owner is None:
        raise InvalidReferenceError(f"user_id: no user with id {user_id!r}")
    tags = await _load_tags(session, tag_ids)
    blog = Blog(title=title, context=context, user_id=user_id, owner=owner, tags=tags)
    session.add(blog)
    await _flush_or_invalid_reference(session)
    return blog


async def replace_blog(
    session: AsyncSession,
    blog_id: str,
    *,
    title: str,
    context: str,
    tag_ids: Sequence[str],
    actor: Actor | None = None,
    precondition: Precondition | None = None,
) -> Blog:
    """Replace title, context and the whole tag list; set `modify_time` and a new `version`.

    Raises `NotFoundError` for an unknown blog, `ForbiddenError` unless `actor` owns it or is
    an admin, `InvalidReferenceError` for an unknown tag, `PreconditionFailedError` when the
    blog is not at a version `precondition` names, `ChangedMeanwhileError` when another
    request changed it during this one.
    """
    blog = await get_blog(session, blog_id)
    ensure_self_or_admin(actor, blog.user_id, "edit this blog")
    if precondition is not None:
        precondition.check(blog.version, "blog")
    tags = await _load_tags(session, tag_ids)
    blog.title, blog.context, blog.tags = title, context, tags
    blog.modify_time = utcnow()
    await _flush_or_invalid_reference(session, precondition)
    return blog


async def delete_blog(
    session: AsyncSession,
    blog_id: str,
    *,
    actor: Actor | None = None,
    precondition: Precondition | None = None,
) -> None:
    """Delete the blog and its tag links. Raises `NotFoundError`, `ForbiddenError` unless
    `actor` owns it or is an admin, or `PreconditionFailedError` (see `replace_blog`)."""
    if (actor is not None and not actor.is_admin) or precondition is not None:
        row = (
            await session.execute(
                select(Blog.user_id, Blog.version).where(Blog.id == blog_id).with_for_update()
            )
        ).first()
        if row is None:
            raise NotFoundError(BLOG_NOT_FOUND)
        ensure_self_or_admin(actor, row.user_id, "delete this blog")
        if precondition is not None:
            precondition.check(row.version, "blog")
    result = await session.execute(delete(Blog).where(Blog.id == blog_id))
    if rowcount(result) == 0:
        raise NotFoundError(BLOG_NOT_FOUND)
