"""What a write statement did, typed."""

from __future__ import annotations

from typing import Any, cast

from sqlalchemy import CursorResult, Result


def rowcount(result: Result[Any]) -> int:
    """Rows an UPDATE or DELETE matched (the `rowcount` of a `CursorResult`)."""
    return cast(CursorResult[Any], result).rowcount
