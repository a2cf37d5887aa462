"""Pagination shared by the list services: `limit` with `offset` (the original's contract), or
with `after` (keyset: the rows whose id follows `after`; ids are UUIDv7, time-ordered, so this
is the insertion order the lists use, and a walk sees every row that existed when it started
exactly once, whatever is inserted meanwhile)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Generic, TypeVar

from sqlalchemy import ColumnElement, Select, func, select
from sqlalchemy.ext.asyncio import AsyncSession

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Page(Generic[T]):
    """One page of a list: `items` in insertion order, and `total` rows of the whole list."""

    items: list[T]
    total: int


async def paginate(
    session: AsyncSession,
    statement: Select[T],
    *,
    limit: int,
    offset: int,
    after: ColumnElement[bool] | None = None,
) -> Page[T]:
    """Run `statement` for rows `offset .. offset+limit` (with `after`, the first `limit` rows
    it admits) and count the whole result (2 queries, plus one per eager-loaded collection)."""
    total = await session.scalar(
        select(func.count()).select_from(statement.order_by(None).subquery())
    )
    page = statement if after is None else statement.where(after)
    rows = await session.scalars(page.limit(limit).offset(offset))
    return Page(items=list(rows.unique()), total=total or 0)
