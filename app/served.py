"""The app as a server serves it: built by the factory, with the Hypercorn patches
(app/hypercorn_patches.py) applied and set from the app's settings (`WS_COMPRESSION`,
`HTTP_HEADER_TIMEOUT`, `MAX_CONTENT_LENGTH`) and its HTTP/1 parser (`HTTP1_PARSER`,
app/hypercorn_http1.py). `app.asgi:app` (hypercorn.toml, `python -m app
serve`) and Quart's usual factory string, `hypercorn "app:create_app()"`, both come here:
without `idle_timer`, hypercorn.toml's long `keep_alive_timeout` would also be the time a
request's headers may take.

On a Hypercorn version the patches do not support, the app is served unpatched, with a
warning (app.hypercorn_patches.check_versions says which versions are supported).
"""

from __future__ import annotations

import logging

from app.factory import ServiceApp, create_app
from app.hypercorn_http1 import use_http1_parser
from app.hypercorn_patches import (
    UnsupportedServerVersion,
    patch_hypercorn,
    set_body_limit,
    set_header_timeout,
    set_websocket_compression,
)
from app.settings import Settings
from app.state import app_state


def create_served_app(settings: Settings | None = None) -> ServiceApp:
    """The app (settings from the environment when None), with the server patches applied."""
    app = create_app(settings)
    try:
        patch_hypercorn()
    except UnsupportedServerVersion as error:
        logging.getLogger("app").warning("serving without the server patches: %s", error)
    else:
        settings = app_state(app).settings
        set_websocket_compression(settings.ws_compression)
        set_header_timeout(settings.http_header_timeout)
        set_body_limit(settings.max_content_length)
        use_http1_parser(settings.http1_parser)
    return app
