"""Helpers shared by the /api/v1 route modules: the session, settings and paging of a request."""

from __future__ import annotations

from werkzeug.exceptions import BadRequest

from app.api.schemas import PageQuery
from app.auth.identity import require_identity
from app.services.permissions import Actor
from app.state import settings

DELETED = "successfully deleted."  # the original's `data` for every DELETE


def page_bounds(query: PageQuery) -> tuple[int, int]:
    """(limit, offset) of a list request; `limit` defaults to, and may not exceed, MAX_PAGE_SIZE.

    Raises `BadRequest` (400 in the envelope) naming `limit`.
    """
    max_size = settings().max_page_size
    if query.limit is not None and query.limit > max_size:
        raise BadRequest(f"limit: must be at most {max_size}")
    return (query.limit or max_size, query.offset)


def total_count_header(total: int) -> dict[str, str]:
    return {"X-Total-Count": str(total)}


def write_actor() -> Actor | None:
    """Who is writing: None when `API_AUTH=open` (anyone may write, as in the original), else
    the authenticated user. Raises 401 for an anonymous write when auth is required."""
    if settings().api_auth == "open":
        return None
    return require_identity().actor
