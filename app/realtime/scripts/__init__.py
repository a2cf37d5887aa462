"""The Lua scripts of the realtime parts, as resource files (each says what it does)."""

from __future__ import annotations

from functools import cache
from importlib.resources import files


@cache
def script(name: str) -> str:
    """The text of `<name>.lua` in this package."""
    return files(__package__).joinpath(f"{name}.lua").read_text()
