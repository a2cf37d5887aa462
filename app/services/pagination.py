"""Offset pagination shared by the list services."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Generic, TypeVar

from sqlalchemy import Select, func, select
from sqlalchemy.ext.asyncio import AsyncSession

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Page(Generic[T]):
    """One page of a list: `items` in insertion order, and `total` rows of the whole list."""

    items: list[T]
    total: int


async def paginate(
    session: AsyncSession, statement: Select[T], *, limit: int, offset: int
) -> Page[T]:
    """Run `statement` for rows `offset .. offset+limit` and count the whole result (2 queries,
    plus one per eager-loaded collection)."""
    total = await session.scalar(
        select(func.count()).select_from(statement.order_by(None).subquery())
    )
    rows = await session.scalars(statement.limit(limit).offset(offset))
    return Page(items=list(rows.unique()), total=total or 0)
