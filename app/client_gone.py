"""The `app.client_gone` ASGI scope extension: a server's way to tell the app, without a task
reading `receive`, that the client of an HTTP request left before its answer was complete.

ASGI tells an app a client left only through `receive()` (`http.disconnect`), so Quart keeps a
task per request awaiting it (app.http_connection's watcher). Under load that task cost a
`GET /api/v1/user/<id>` 55 us of a worker's CPU on Hypercorn and 29 us on Uvicorn (bench/,
docs/performance.md). The service's own HTTP/1 protocols (app.hypercorn_http1's fast path,
app.uvicorn_server's) offer this extension instead: a `ClientGone` in
`scope["extensions"]["app.client_gone"]`, on which the app registers callbacks
(`on_gone`); the server calls `notify()` when the client's connection is lost while the request
is in flight (its answer not yet all written), and each callback runs once, with no argument.
A client gone before the app registers (while the request waited in admission's queue) is
remembered: `on_gone` says so at once. A server without the extension (Hypercorn's h11 and
HTTP/2 paths, any other server) leaves it out, and the app watches `receive()` as Quart does.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

CLIENT_GONE = "app.client_gone"


class ClientGone:
    """Whether one request's client is gone, and what to call when it goes.

    Never copied: a middleware that deep-copies the scope (Hypercorn's `ProxyFixMiddleware`,
    in front when `FORWARDED_ALLOW_HOPS` is set) must give the app the server's own object, or
    the server would notify one nobody registered on.
    """

    __slots__ = ("_callbacks", "gone")

    def __init__(self) -> None:
        self._callbacks: list[Callable[[], None]] = []
        self.gone = False

    def on_gone(self, callback: Callable[[], None]) -> bool:
        """Call `callback` when the client goes (the app's). Returns False, and keeps nothing,
        if it has gone already."""
        if self.gone:
            return False
        self._callbacks.append(callback)
        return True

    def notify(self) -> None:
        """The client is gone (the server's): run each callback once; later calls do nothing."""
        if self.gone:
            return
        self.gone = True
        callbacks, self._callbacks = self._callbacks, []
        for callback in callbacks:
            callback()

    def __copy__(self) -> ClientGone:
        return self

    def __deepcopy__(self, memo: dict[int, Any]) -> ClientGone:
        return self


def offer(scope: dict[str, Any]) -> ClientGone:
    """Add the extension to `scope` (a server's, before the app is called); returns what the
    server notifies."""
    client_gone = ClientGone()
    extensions = scope.get("extensions")
    if extensions is None:
        scope["extensions"] = {CLIENT_GONE: client_gone}
    else:
        extensions[CLIENT_GONE] = client_gone
    return client_gone


def client_gone_of(scope: dict[str, Any]) -> ClientGone | None:
    """The extension in `scope`, or None if the server does not offer it."""
    extensions = scope.get("extensions")
    if not extensions:
        return None
    found: ClientGone | None = extensions.get(CLIENT_GONE)
    return found
