"""`/api/v1/user` routes (contract §1)."""

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
from app.api.openapi import (
    CONDITIONAL,
    KEYED,
    WRITE,
    RevokedSessions,
    UserOut,
    UserWithBlogs,
    responds,
)
from app.api.schemas import PageQuery, UserIn
from app.auth.identity import current_identity, require_identity
from app.envelope import succeed
from app.presenters import blog_json, user_json
from app.services import users as user_service
from app.state import database, settings

blueprint = Blueprint("users", __name__)


@blueprint.post("/user")
@responds(UserOut, *WRITE, *KEYED, secured=True)
@idempotent
@validate_request(UserIn)
@tag(["users"])
async def create_user(data: UserIn) -> Response:
    """Create a user (admins only when auth is required). 409 if the name is taken."""
    actor = write_actor()
    async with database().session() as session:
        user = await user_service.create_user(
            session, name=data.name, role=data.role, password=data.password, actor=actor
        )
        return await commit_write(session, with_etag(succeed(user_json(user)), user.version))


@blueprint.get("/user")
@responds(list[UserOut])
@validate_querystring(PageQuery)
@tag(["users"])
async def list_users(query_args: PageQuery) -> Response:
    """All users in insertion order; `X-Total-Count` gives the total."""
    bounds = page_bounds(query_args, "users")
    async with database().session() as session:
        page = await user_service.list_users(
            session, limit=bounds.limit, offset=bounds.offset, after=bounds.after
        )
    return succeed(
        [user_json(user) for user in page.items], headers=page_headers(page, "users", bounds)
    )


@blueprint.get("/user/<user_id>")
@responds(UserOut, 404)
@conditional_get
@tag(["users"])
async def get_user(user_id: str) -> Response:
    """One user, with its `ETag`. 404 if unknown; 304 for a current If-None-Match."""
    user = await database().read(user_service.get_user_view, user_id)
    return not_modified(user.version) or with_etag(succeed(user_json(user)), user.version)


@blueprint.put("/user/<user_id>")
@responds(UserOut, *WRITE, *KEYED, *CONDITIONAL, 404, secured=True)
@conditional_write
@idempotent
@validate_request(UserIn)
@tag(["users"])
async def replace_user(user_id: str, data: UserIn) -> Response:
    """Replace name and role (and the password, if given). 404 if unknown, 403 for another
    user's account or a role change by a non-admin, 409 if the name is another user's."""
    actor = write_actor()
    precondition = write_precondition()
    identity = current_identity()
    keep = identity.credential if identity is not None and identity.user_id == user_id else None
    async with database().session() as session:
        user = await user_service.replace_user(
            session,
            user_id,
            name=data.name,
            role=data.role,
            password=data.password,
            actor=actor,
            keep_credential=keep,
            precondition=precondition,
        )
        return await commit_write(session, with_etag(succeed(user_json(user)), user.version))


@blueprint.delete("/user/<user_id>/sessions")
@responds(RevokedSessions, 403, 404, secured=True)
@tag(["users", "auth"])
async def revoke_sessions(user_id: str) -> Response:
    """End every login session and bearer token of the user, on every worker at once (the
    user themself or an admin). `data` is `{"revoked": n}`. 404 if unknown, 403 otherwise."""
    actor = require_identity().actor
    async with database().session() as session:
        revoked = await user_service.revoke_credentials(session, user_id, actor=actor)
    return succeed({"revoked": revoked})


@blueprint.delete("/user/<user_id>")
@responds(str, 403, 404, *KEYED, *CONDITIONAL, secured=True)
@conditional_write
@idempotent
@tag(["users"])
async def delete_user(user_id: str) -> Response:
    """Delete a user and their blogs. 404 if unknown, 403 for another user unless admin, 412
    for a stale If-Match."""
    actor = write_actor()
    precondition = write_precondition()
    async with database().session() as session:
        await user_service.delete_user(session, user_id, actor=actor, precondition=precondition)
        return await commit_write(session, succeed(DELETED))


@blueprint.get("/user/<user_id>/blogs")
@responds(UserWithBlogs, 404)
@tag(["users"])
async def get_user_blogs(user_id: str) -> Response:
    """The user with `blogs`: [Blog]. 404 if unknown."""
    async with database().session() as session:
        user = await user_service.get_user_with_blogs(session, user_id)
    tz = settings().tz
    return succeed({**user_json(user), "blogs": [blog_json(blog, tz) for blog in user.blogs]})


@blueprint.get("/me")
@responds(UserOut, secured=True)
@tag(["auth"])
async def get_me() -> Response:
    """The authenticated user (session cookie, Basic or Bearer). 401 if anonymous."""
    actor = require_identity().actor
    async with database().session() as session:
        user = await user_service.get_user(session, actor.user_id)
    return succeed(user_json(user))
