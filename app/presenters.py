"""JSON shapes of the original (contract §1): User, Tag, Blog; times in the display time zone.
Shared by the API, the pages and the websockets (a presenter knows no HTTP)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, tzinfo
from typing import Any, Protocol


class UserFields(Protocol):
    """A `User` row, or a read model with its fields (app/services/blogs.py)."""

    @property
    def id(self) -> str: ...
    @property
    def name(self) -> str: ...
    @property
    def role(self) -> int: ...


class TagFields(Protocol):
    @property
    def id(self) -> str: ...
    @property
    def name(self) -> str: ...


class BlogFields(Protocol):
    @property
    def id(self) -> str: ...
    @property
    def title(self) -> str: ...
    @property
    def context(self) -> str: ...
    @property
    def owner(self) -> UserFields: ...
    @property
    def tags(self) -> Sequence[TagFields]: ...
    @property
    def create_time(self) -> datetime: ...
    @property
    def modify_time(self) -> datetime | None: ...


TIME_FORMAT = "%Y-%m-%d %H:%M:%S"


def format_time(value: datetime | None, tz: tzinfo) -> str | None:
    """`"YYYY-MM-DD HH:MM:SS"` in `tz` (naive, like the original's), or None."""
    return None if value is None else value.astimezone(tz).strftime(TIME_FORMAT)


def format_epoch(epoch: float | None, tz: tzinfo) -> str | None:
    """An epoch (seconds, as presence stores keep them) shown like `format_time`, or None."""
    return None if epoch is None else format_time(datetime.fromtimestamp(epoch, UTC), tz)


def user_json(user: UserFields) -> dict[str, Any]:
    """`{"id", "name", "role"}`."""
    return {"id": user.id, "name": user.name, "role": user.role}


def tag_json(tag: TagFields) -> dict[str, Any]:
    """`{"id", "name"}`."""
    return {"id": tag.id, "name": tag.name}


def blog_json(blog: BlogFields, tz: tzinfo) -> dict[str, Any]:
    """`{"id", "title", "context", "owner": User, "tags": [Tag], "create_time", "modify_time"}`;
    `owner` and `tags` must be loaded."""
    return {
        "id": blog.id,
        "title": blog.title,
        "context": blog.context,
        "owner": user_json(blog.owner),
        "tags": [tag_json(tag) for tag in blog.tags],
        "create_time": format_time(blog.create_time, tz),
        "modify_time": format_time(blog.modify_time, tz),
    }
