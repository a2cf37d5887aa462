"""Request bodies and query strings of the /api/v1 routes (validated by quart-schema).

Types are strict: `role` must be the JSON integer 0 or 1 (not `true`, `"1"` or `1.0`), strings
must be JSON strings. Unknown fields are ignored, as the original ignored them.
"""

from __future__ import annotations

from typing import Annotated

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    StrictInt,
    StrictStr,
    StringConstraints,
)

from app.models import (
    BLOG_CONTEXT_MAX,
    BLOG_TITLE_MAX,
    NAME_KEY_MAX,
    TAG_NAME_MAX,
    USER_NAME_MAX,
    name_key,
)
from app.names import invisible_characters, refusal

STRICT = ConfigDict(strict=True, extra="ignore")


def printable_name(value: str) -> str:
    """Refuse control, format (e.g. bidi overrides), private-use and unassigned characters,
    default-ignorable and blank ones (app.names.invisible_characters): they make names that
    look like other names, or like nothing, or break logs."""
    invisible = invisible_characters(value)
    if invisible:
        raise ValueError(
            "must not contain control, bidi, invisible or blank characters "
            f"({', '.join(invisible[:3])})"
        )
    if len(name_key(value)) > NAME_KEY_MAX:
        raise ValueError("is too long once normalised")
    return value


def one_script(value: str) -> str:
    """Refuse names that mix scripts (app.names: "rоot" with a Cyrillic о)."""
    reason = refusal(value)
    if reason is not None:
        raise ValueError(reason)
    return value


UserName = Annotated[
    StrictStr,
    StringConstraints(strip_whitespace=True, min_length=1, max_length=USER_NAME_MAX),
    AfterValidator(printable_name),
    AfterValidator(one_script),
]
TagName = Annotated[
    StrictStr,
    StringConstraints(strip_whitespace=True, min_length=1, max_length=TAG_NAME_MAX),
    AfterValidator(printable_name),
]
BlogTitle = Annotated[
    StrictStr, StringConstraints(strip_whitespace=True, min_length=1, max_length=BLOG_TITLE_MAX)
]
BlogContext = Annotated[StrictStr, StringConstraints(max_length=BLOG_CONTEXT_MAX)]
Role = Annotated[StrictInt, Field(ge=0, le=1, description="0 user, 1 admin")]
ObjectId = Annotated[StrictStr, StringConstraints(min_length=1, max_length=64)]
Password = Annotated[StrictStr, StringConstraints(min_length=8, max_length=1024)]


class UserIn(BaseModel):
    """POST and PUT `/api/v1/user` (PUT replaces name and role). `password` is optional and
    write-only; on PUT, leaving it out keeps the current one."""

    model_config = STRICT
    name: UserName
    role: Role
    password: Password | None = None


class OnlineQuery(BaseModel):
    """`?minutes=` of `/api/v1/online`: the window, default `ONLINE_LAST_MINUTES`."""

    minutes: int | None = Field(default=None, ge=1)


class TagIn(BaseModel):
    """POST and PUT `/api/v1/tag`."""

    model_config = STRICT
    name: TagName


class BlogCreate(BaseModel):
    """POST `/api/v1/blog`. `context` is the body text (the original's field name)."""

    model_config = STRICT
    title: BlogTitle
    context: BlogContext
    user_id: ObjectId
    tags: list[ObjectId] = Field(max_length=100, description="tag ids; duplicates are ignored")


class BlogUpdate(BaseModel):
    """PUT `/api/v1/blog/<id>`: replaces title, context and the whole tag list."""

    model_config = STRICT
    title: BlogTitle
    context: BlogContext
    tags: list[ObjectId] = Field(max_length=100, description="tag ids; duplicates are ignored")


class PageQuery(BaseModel):
    """`?limit=&offset=` of the list routes (the upper bound of `limit` is `MAX_PAGE_SIZE`), or
    `?limit=&cursor=`: the `X-Next-Cursor` of the previous page (docs/api.md, "Paging")."""

    limit: int | None = Field(default=None, ge=1)
    offset: int = Field(default=0, ge=0, le=10**9)
    cursor: str | None = Field(
        default=None,
        max_length=200,
        description="The previous page's X-Next-Cursor: the rows after its last one.",
    )


class HistoryQuery(BaseModel):
    """`?hours=` of `/api/v1/online/history`: 1 to 168 (a week), default 24."""

    hours: int = Field(default=24, ge=1, le=168)
