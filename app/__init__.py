"""quart-framework: an asyncio rewrite, on Quart, of the flask-framework blog/user/tag service.

`create_app()` here is what a server loads: `hypercorn "app:create_app()"` (Quart's usual
factory string) serves the same app as `app.asgi:app`, the Hypercorn patches included
(app.served). Code and tests that only need the app build it with `app.factory.create_app`.
This package's `__init__` imports nothing at import time, so `import app.models` (Alembic, the
CLI's database commands) does not load Quart or the hub.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from app.factory import ServiceApp
    from app.settings import Settings

__all__ = ["create_app"]


def create_app(settings: Settings | None = None) -> ServiceApp:
    """The app as a server serves it (app.served.create_served_app): settings from the
    environment when None."""
    from app.served import create_served_app

    return create_served_app(settings)
