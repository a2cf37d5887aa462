"""`/api/v1/blog` routes (contract §1)."""

from __future__ import annotations

from quart import Blueprint, Response, request
from quart_schema import tag, validate_querystring, validate_request

from app.api.common import DELETED, page_bounds, page_headers, write_actor
from app.api.conditional import (
    conditional_get,
    conditional_write,
    not_modified,
    with_etag,
    write_precondition,
)
from app.api.idempotency import commit_write, idempotent
from app.api.openapi import CONDITIONAL, KEYED, WRITE, BlogOut, responds
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
        response = with_etag(succeed(blog_json(blog, settings().tz)), blog.version)
        return await commit_write(session, response)


@blueprint.get("/blog")
@responds(list[BlogOut])
@validate_querystring(PageQuery)
@tag(["blogs"])
async def list_blogs(query_args: PageQuery) -> Response:
    """All blogs in insertion order, with owners and tags; `X-Total-Count` gives the total."""
    bounds = page_bounds(query_args, "blogs")
    # The count, the page and its tags: three statements that must agree.
    page = await database().read_snapshot(
        blog_service.list_blogs, limit=bounds.limit, offset=bounds.offset, after=bounds.after
    )
    tz = settings().tz
    return succeed(
        [blog_json(blog, tz) for blog in page.items], headers=page_headers(page, "blogs", bounds)
    )


@blueprint.get("/blog/<blog_id>")
@responds(BlogOut, 404)
@conditional_get
@tag(["blogs"])
async def get_blog(blog_id: str) -> Response:
    """One blog, with its `ETag`. 404 if unknown; 304 for a current If-None-Match (compared
    before the owner and tags are read)."""
    if "If-None-Match" in request.headers:
        version = await database().read(blog_service.get_blog_version, blog_id)
        if (unchanged := not_modified(version)) is not None:
            return unchanged
    async with database().session() as session:
        blog = await blog_service.get_blog(session, blog_id)
    return with_etag(succeed(blog_json(blog, settings().tz)), blog.version)


@blueprint.put("/blog/<blog_id>")
@responds(BlogOut, *WRITE, *KEYED, *CONDITIONAL, 404, secured=True)
@conditional_write
@idempotent
@validate_request(BlogUpdate)
@tag(["blogs"])
async def replace_blog(blog_id: str, data: BlogUpdate) -> Response:
    """Replace title, context and tags (the tag list is replaced, not appended to); 412 for a
    stale If-Match."""
    actor = write_actor()
    precondition = write_precondition()
    async with database().session() as session:
        blog = await blog_service.replace_blog(
            session,
            blog_id,
            title=data.title,
            context=data.context,
            tag_ids=data.tags,
            actor=actor,
            precondition=precondition,
        )
        response = with_etag(succeed(blog_json(blog, settings().tz)), blog.version)
        return await commit_write(session, response)


@blueprint.delete("/blog/<blog_id>")
@responds(str, 403, 404, *KEYED, *CONDITIONAL, secured=True)
@conditional_write
@idempotent
@tag(["blogs"])
async def delete_blog(blog_id: str) -> Response:
    """Delete a blog. 404 if unknown; 412 for a stale If-Match."""
    actor = write_actor()
    precondition = write_precondition()
    async with database().session() as session:
        await blog_service.delete_blog(session, blog_id, actor=actor, precondition=precondition)
        return await commit_write(session, succeed(DELETED))
