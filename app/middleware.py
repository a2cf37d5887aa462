"""The service's ASGI middleware stack as one ordered list, outermost first, built once per app
(as Starlette's `build_middleware_stack`): `ServiceApp.__call__` serves every connection
through it, and Quart's own `asgi_app` is its innermost app. Each middleware is a callable that
takes the app inside it and returns the wrapped app (a class, a `functools.partial` of one, or
a function); each passes the scope types it does not handle straight through.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import Any

# (scope, receive, send): the scope is a dict of the ASGI spec; its typed forms differ between
# Quart, Hypercorn and this service's middlewares, hence Any.
ASGIApp = Callable[[Any, Any, Any], Awaitable[None]]
Middleware = Callable[[ASGIApp], ASGIApp]


def build_middleware_stack(app: ASGIApp, middleware: Sequence[Middleware]) -> ASGIApp:
    """`app` wrapped in `middleware`, whose first entry is the outermost (the first to see a
    connection)."""
    for wrap in reversed(middleware):
        app = wrap(app)
    return app
