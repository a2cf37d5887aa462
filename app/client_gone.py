"""The `app.client_gone` ASGI scope extension: a server's way to tell the app, without a task
reading `receive`, that the client of an HTTP request left before its answer was complete.

ASGI tells an app a client left only through `receive()` (`http.disconnect`), so Quart keeps a
task per request awaiting it (app.http_connection's watcher). Under load that task cost a
`GET /api/v1/user/<id>` 55 us of a worker's CPU on Hypercorn and 29 us on Uvicorn (bench/,
docs/performance.md). The service's own HTTP/1 protocols (app.hypercorn_http1's fast path,
app.uvicorn_server's) offer this extension instead: a list in
`scope["extensions"]["app.client_gone"]` to which the app appends callables; the server calls
each once, with no argument, when the client's connection is lost while the request is in
flight (its answer not yet all written). A server without it (Hypercorn's h11 and HTTP/2
paths, any other server) leaves the extension out, and the app watches `receive()` as Quart
does.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

CLIENT_GONE = "app.client_gone"


class ClientGoneCallbacks(list[Callable[[], None]]):
    """The extension's list: the app appends, the server calls (`notify`). Never copied: a
    middleware that deep-copies the scope (Hypercorn's `ProxyFixMiddleware`, behind
    `FORWARDED_ALLOW_HOPS`) must give the app the server's own list, or the server would call
    an empty one."""

    def __copy__(self) -> ClientGoneCallbacks:
        return self

    def __deepcopy__(self, memo: dict[int, Any]) -> ClientGoneCallbacks:
        return self


def offer(scope: dict[str, Any]) -> ClientGoneCallbacks:
    """Add the extension to `scope` (a server's, before the app is called); returns the list
    the server calls with `notify`."""
    callbacks = ClientGoneCallbacks()
    extensions = scope.get("extensions")
    if extensions is None:
        scope["extensions"] = {CLIENT_GONE: callbacks}
    else:
        extensions[CLIENT_GONE] = callbacks
    return callbacks


def notify(callbacks: ClientGoneCallbacks) -> None:
    """Call the app's callbacks (a server's, when the request's client is gone), each once."""
    pending = callbacks[:]
    callbacks.clear()
    for callback in pending:
        callback()


def callbacks_of(scope: dict[str, Any]) -> ClientGoneCallbacks | None:
    """The extension's list in `scope`, or None if the server does not offer it."""
    extensions = scope.get("extensions")
    if not extensions:
        return None
    found: ClientGoneCallbacks | None = extensions.get(CLIENT_GONE)
    return found
