"""Read models: rows as the API shows them, read with Core queries into plain values.

Building ORM objects costs most of a read's time once the query itself is cheap (py-spy,
bench/): list and by-id reads that change nothing use these instead. They have the attributes
of the ORM models they stand for, so `app.presenters` shows both alike.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime


@dataclass(frozen=True, slots=True)
class UserView:
    id: str
    name: str
    role: int
    version: int = 0  # read where an ETag is sent (one user); 0 in lists, which send none


@dataclass(frozen=True, slots=True)
class TagView:
    id: str
    name: str
    version: int = 0  # read where an ETag is sent (one tag); 0 in blogs' tag lists


@dataclass(frozen=True, slots=True)
class BlogView:
    """A blog as lists show it: plain values read with Core queries, not ORM objects (which
    cost most of a 500-row list's time: bench/, GET blog list)."""

    id: str
    title: str
    context: str
    owner: UserView
    tags: list[TagView]
    create_time: datetime
    modify_time: datetime | None
