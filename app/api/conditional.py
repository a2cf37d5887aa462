"""ETags and conditional requests on users, blogs and tags (RFC 9110 §8.8.3, §13).

- `ETag` is the row's `version` column (app.services.versions), a strong validator: `"3"`.
  Sent with every single-object answer (GET, POST, PUT).
- `If-None-Match` on a GET: 304 with the `ETag` and no body when a tag matches (weak comparison,
  `*` matches any). A blog is compared before its owner and tags are read.
- `If-Match` on PUT and DELETE: 412 when the current version is not among its tags (strong
  comparison; `*` matches any existing object). The write itself is conditional too (the
  UPDATE names the version it read), so of two writers holding one ETag exactly one wins.
- Without `If-Match` a PUT or DELETE works as in the original, unless `REQUIRE_IF_MATCH=true`
  (428). A concurrent change between a write's read and its UPDATE is then a 409.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from pydantic import BaseModel, Field
from quart import Response, request
from quart_schema import document_response
from werkzeug.exceptions import PreconditionRequired

from app.api.openapi import NoContent, add_header_model
from app.services.versions import Precondition
from app.state import settings

View = TypeVar("View", bound=Callable[..., Any])


class IfNoneMatchHeader(BaseModel):
    if_none_match: str | None = Field(
        default=None,
        description='The ETag of a copy held (`"3"`, a list, or `*`): 304 without a body if '
        "the object is still at that version.",
    )


class IfMatchHeader(BaseModel):
    if_match: str | None = Field(
        default=None,
        description='The ETag this write replaces (`"3"`, a list, or `*`): 412 if the object '
        "changed since; 428 without it when REQUIRE_IF_MATCH is on.",
    )


def conditional_get(view: View) -> View:
    """Document If-None-Match and its 304 on a GET of one object."""
    return add_header_model(document_response(NoContent, 304)(view), IfNoneMatchHeader)


def conditional_write(view: View) -> View:
    """Document If-Match on a PUT or DELETE of one object (its 412 and 428 are in `responds`)."""
    return add_header_model(view, IfMatchHeader)


def etag(version: int) -> str:
    """The quoted strong entity tag of `version`."""
    return f'"{version}"'


def with_etag(response: Response, version: int) -> Response:
    response.headers["ETag"] = etag(version)
    return response


def not_modified(version: int) -> Response | None:
    """A 304 when the request's If-None-Match matches `version` (weak comparison), else None."""
    if "If-None-Match" not in request.headers:
        return None
    tags = request.if_none_match
    if tags.star_tag or tags.contains_weak(str(version)):
        return with_etag(Response(status=304), version)
    return None


def write_precondition() -> Precondition | None:
    """The request's If-Match as a `Precondition`; None without one. Raises
    `PreconditionRequired` (428) without one when `REQUIRE_IF_MATCH` is on."""
    if "If-Match" not in request.headers:
        if settings().require_if_match:
            raise PreconditionRequired(
                "If-Match: required on this write (send the ETag of a GET of the object)"
            )
        return None
    tags = request.if_match
    if tags.star_tag:
        return Precondition(None)
    # Strong comparison: weak tags never match (RFC 9110 §13.1.1); ours are decimal versions.
    return Precondition(frozenset(int(tag) for tag in tags.as_set() if tag.isdecimal()))
