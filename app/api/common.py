"""Helpers shared by the /api/v1 route modules: the session, settings and paging of a request."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

from itsdangerous import BadSignature, URLSafeSerializer
from quart import request
from werkzeug.exceptions import BadRequest

from app.api.schemas import PageQuery
from app.auth.identity import require_identity
from app.services.pagination import Page
from app.services.permissions import Actor
from app.state import settings

DELETED = "successfully deleted."  # the original's `data` for every DELETE


@dataclass(frozen=True, slots=True)
class PageBounds:
    """Which rows of a list a request asks for: `limit` rows from `offset`, or after the id
    `after` (a cursor's)."""

    limit: int
    offset: int
    after: str | None


def page_bounds(query: PageQuery, listing: str) -> PageBounds:
    """The bounds of a request for the list `listing` ("users", "blogs", "tags"); `limit`
    defaults to, and may not exceed, MAX_PAGE_SIZE.

    Raises `BadRequest` (400 in the envelope) naming `limit` or `cursor` (not one this service
    signed for this list, or given with an `offset`).
    """
    max_size = settings().max_page_size
    if query.limit is not None and query.limit > max_size:
        raise BadRequest(f"limit: must be at most {max_size}")
    after = None
    if query.cursor is not None:
        if query.offset:
            raise BadRequest("cursor: give a cursor or an offset, not both")
        try:
            cursor_listing, after = _cursors().loads(query.cursor)
        except (BadSignature, ValueError, TypeError) as error:
            raise BadRequest("cursor: not a cursor of this list (use X-Next-Cursor)") from error
        if cursor_listing != listing or not isinstance(after, str):
            raise BadRequest("cursor: not a cursor of this list (use X-Next-Cursor)")
    return PageBounds(query.limit or max_size, query.offset, after)


def _cursors() -> URLSafeSerializer:
    # Signed, so a cursor is opaque: clients pass back what they were given.
    return URLSafeSerializer(settings().secret_key, salt="list-cursor")


def page_headers(page: Page[Any], listing: str, bounds: PageBounds) -> dict[str, str]:
    """`X-Total-Count`, and `X-Next-Cursor` (with a `Link` rel="next") when the page is full:
    more rows may follow its last one."""
    headers = {"X-Total-Count": str(page.total)}
    if page.items and len(page.items) == bounds.limit:
        cursor = _cursors().dumps([listing, page.items[-1].id])
        headers["X-Next-Cursor"] = cursor
        headers["Link"] = (
            f'<{request.path}?{urlencode({"cursor": cursor, "limit": bounds.limit})}>; rel="next"'
        )
    return headers


def write_actor() -> Actor | None:
    """Who is writing: None when `API_AUTH=open` (anyone may write, as in the original), else
    the authenticated user. Raises 401 for an anonymous write when auth is required."""
    if settings().api_auth == "open":
        return None
    return require_identity().actor
