"""quart-framework: an asyncio rewrite, on Quart, of the flask-framework blog/user/tag service.

`create_app` (app.factory) builds the app. This package's `__init__` imports nothing else, so
`import app.models` (Alembic, the CLI's database commands) does not load Quart or the hub.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from app.factory import create_app

__all__ = ["create_app"]


def __getattr__(name: str) -> Any:
    if name == "create_app":
        from app.factory import create_app

        return create_app
    raise AttributeError(name)
