"""`/api/v1/blog` routes (contract §1)."""

from __future__ import annotations

from quart import Blueprint, Response
from quart_schema import tag, validate_querystring, validate_request

from app.api.common import DELETED, page_bounds, total_count_header, write_actor
from app.api.idempotency import commit_write, idempotent
from app.api.openapi import KEYED, WRITE, BlogOut, responds
from app.api.schemas import BlogCreate, BlogUpdate, PageQuery
from app.envelope import succeed
from app.presenters import blog_json
from app.services import blogs as blog_service
from app.state import database, settings

blueprint = Blueprint("blogs", __name__)


@blueprint.post("/blog")
@responds(BlogOut, *WRITE, *KEYED, 404, secured=True)
@idempotent
@validate_request(BlogCreate)
@tag(["blogs"])
async def create_blog(data: BlogCreate) -> Response:
    """Create a blog. 400 naming the field if the user or a tag does not exist."""
    actor = write_actor()
    async with database().session() as session:
        blog = await blog_service.create_blog(
            session,
            title=data.title,
            context=data.context,
            user_id=data.user_id,
            tag_ids=data.tags,
            actor=actor,
        )
        return await commit_write(session, succeed(blog_json(blog, settings().tz)))


@blueprint.get("/blog")
@responds(list[BlogOut])
@validate_querystring(PageQuery)
@tag(["blogs"])
async def list_blogs(query_args: PageQuery) -> Response:
    """All blogs in insertion order, with owners and tags; `X-Total-Count` gives the total."""
    limit, offset = page_bounds(query_args)
    # The count, the page and its tags: three statements that must agree.
    page = await database().read_snapshot(blog_service.list_blogs, limit=limit, offset=offset)
    tz = settings().tz
    return succeed(
        [blog_json(blog, tz) for blog in page.items], headers=total_count_header(page.total)
    )


@blueprint.get("/blog/<blog_id>")
@responds(BlogOut, 404)
@tag(["blogs"])
async def get_blog(blog_id: str) -> Response:
    """One blog. 404 if unknown."""
    async with database().session() as session:
        blog = await blog_service.get_blog(session, blog_id)
    return succeed(blog_json(blog, settings().tz))


@blueprint.put("/blog/<blog_id>")
@responds(BlogOut, *WRITE, *KEYED, 404, secured=True)
@idempotent
@validate_request(BlogUpdate)
@tag(["blogs"])
async def replace_blog(blog_id: str, data: BlogUpdate) -> Response:
    """Replace title, context and tags (the tag list is replaced, not appended to)."""
    actor = write_actor()
    async with database().session() as session:
        blog = await blog_service.replace_blog(
            session, blog_id, title=data.title, context=data.context, tag_ids=data.tags, actor=actor
        )
        return await commit_write(session, succeed(blog_json(blog, settings().tz)))


@blueprint.delete("/blog/<blog_id>")
@responds(str, 403, 404, *KEYED, secured=True)
@idempotent
@tag(["blogs"])
async def delete_blog(blog_id: str) -> Response:
    """Delete a blog. 404 if unknown."""
    actor = write_actor()
    async with database().session() as session:
        await blog_service.delete_blog(session, blog_id, actor=actor)
        return await commit_write(session, succeed(DELETED))
