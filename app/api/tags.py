"""`/api/v1/tag` routes (contract §1)."""

from __future__ import annotations

from quart import Blueprint, Response
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
from app.api.openapi import CONDITIONAL, KEYED, WRITE, TagOut, TagWithBlogs, responds
from app.api.schemas import PageQuery, TagIn
from app.envelope import succeed
from app.presenters import blog_json, tag_json
from app.services import tags as tag_service
from app.state import database, settings

blueprint = Blueprint("tags", __name__)


@blueprint.post("/tag")
@responds(TagOut, *WRITE, *KEYED, secured=True)
@idempotent
@validate_request(TagIn)
@tag(["tags"])
async def create_tag(data: TagIn) -> Response:
    """Create a tag (any authenticated user when auth is required)."""
    write_actor()
    async with database().session() as session:
        created = await tag_service.create_tag(session, name=data.name)
        return await commit_write(session, with_etag(succeed(tag_json(created)), created.version))


@blueprint.get("/tag")
@responds(list[TagOut])
@validate_querystring(PageQuery)
@tag(["tags"])
async def list_tags(query_args: PageQuery) -> Response:
    """All tags in insertion order; `X-Total-Count` gives the total."""
    bounds = page_bounds(query_args, "tags")
    async with database().session() as session:
        page = await tag_service.list_tags(
            session, limit=bounds.limit, offset=bounds.offset, after=bounds.after
        )
    return succeed(
        [tag_json(item) for item in page.items], headers=page_headers(page, "tags", bounds)
    )


@blueprint.get("/tag/<tag_id>")
@responds(TagOut, 404)
@conditional_get
@tag(["tags"])
async def get_tag(tag_id: str) -> Response:
    """One tag, with its `ETag`. 404 if unknown; 304 for a current If-None-Match."""
    found = await database().read(tag_service.get_tag_view, tag_id)
    return not_modified(found.version) or with_etag(succeed(tag_json(found)), found.version)


@blueprint.put("/tag/<tag_id>")
@responds(TagOut, *WRITE, *KEYED, *CONDITIONAL, 404, secured=True)
@conditional_write
@idempotent
@validate_request(TagIn)
@tag(["tags"])
async def rename_tag(tag_id: str, data: TagIn) -> Response:
    """Rename a tag (admins only when auth is required). 404 if unknown."""
    actor = write_actor()
    precondition = write_precondition()
    async with database().session() as session:
        renamed = await tag_service.rename_tag(
            session, tag_id, name=data.name, actor=actor, precondition=precondition
        )
        return await commit_write(session, with_etag(succeed(tag_json(renamed)), renamed.version))


@blueprint.delete("/tag/<tag_id>")
@responds(str, 403, 404, *KEYED, *CONDITIONAL, secured=True)
@conditional_write
@idempotent
@tag(["tags"])
async def delete_tag(tag_id: str) -> Response:
    """Delete a tag; blogs lose it (admins only when auth is required). 404 if unknown."""
    actor = write_actor()
    precondition = write_precondition()
    async with database().session() as session:
        await tag_service.delete_tag(session, tag_id, actor=actor, precondition=precondition)
        return await commit_write(session, succeed(DELETED))


@blueprint.get("/tag/<tag_id>/blogs")
@responds(TagWithBlogs, 404)
@tag(["tags"])
async def get_tag_blogs(tag_id: str) -> Response:
    """The tag with `blogs`: [Blog] carrying it. 404 if unknown."""
    async with database().session() as session:
        found = await tag_service.get_tag_with_blogs(session, tag_id)
    tz = settings().tz
    return succeed({**tag_json(found), "blogs": [blog_json(blog, tz) for blog in found.blogs]})
