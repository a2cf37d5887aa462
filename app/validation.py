"""Naming what failed validation, the same way for HTTP bodies and websocket frames."""

from __future__ import annotations

from typing import Any


def field_name(location: tuple[Any, ...]) -> str:
    """A pydantic error location as people write it: `("tags", 0)` -> `"tags[0]"`."""
    name = ""
    for part in location:
        name += f"[{part}]" if isinstance(part, int) else (f".{part}" if name else str(part))
    return name
