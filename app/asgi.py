"""The ASGI entry point for Hypercorn: `app.asgi:app`, configured from the environment.

A plain `hypercorn --config hypercorn.toml app.asgi:app` gets the server patches too
(app/hypercorn_patches.py; `python -m app serve` applies them itself): without `idle_timer`,
hypercorn.toml's long `keep_alive_timeout` would also be the time a request's headers may take.
"""

import logging

from app import create_app
from app.hypercorn_patches import UnsupportedServerVersion, patch_hypercorn, set_header_timeout
from app.state import app_state

app = create_app()
try:
    patch_hypercorn()
except UnsupportedServerVersion as error:
    logging.getLogger("app").warning("serving without the server patches: %s", error)
else:
    set_header_timeout(app_state(app).settings.http_header_timeout)
