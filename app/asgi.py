"""The ASGI entry point for Hypercorn: `app.asgi:app`, configured from the environment.

Loading it applies the server patches (app/hypercorn_patches.py) with the app's settings
(`WS_COMPRESSION`, `HTTP_HEADER_TIMEOUT`), for `python -m app serve`'s workers and a plain
`hypercorn --config hypercorn.toml app.asgi:app` alike: without `idle_timer`, hypercorn.toml's
long `keep_alive_timeout` would also be the time a request's headers may take.
"""

import logging

from app import create_app
from app.hypercorn_patches import (
    UnsupportedServerVersion,
    patch_hypercorn,
    set_body_limit,
    set_header_timeout,
    set_websocket_compression,
)
from app.state import app_state

app = create_app()
try:
    patch_hypercorn()
except UnsupportedServerVersion as error:
    logging.getLogger("app").warning("serving without the server patches: %s", error)
else:
    settings = app_state(app).settings
    set_websocket_compression(settings.ws_compression)
    set_header_timeout(settings.http_header_timeout)
    set_body_limit(settings.max_content_length)
