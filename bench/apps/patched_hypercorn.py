"""bench/apps/raw_asgi.py on one Hypercorn worker with every patch of the service
(app/hypercorn_patches.py) and its HTTP/1 parser, the way `serve` runs a worker:

    python -m bench.apps.patched_hypercorn PORT httptools|h11
"""

from __future__ import annotations

import asyncio
import signal
import sys

from hypercorn.asyncio.run import worker_serve
from hypercorn.config import Config
from hypercorn.utils import wrap_app

from app import hypercorn_http1, hypercorn_patches
from bench.apps.raw_asgi import app


async def serve(port: int, parser: str) -> None:
    hypercorn_patches.patch_hypercorn()
    hypercorn_http1.use_http1_parser("httptools" if parser == "httptools" else "h11")
    config = Config()
    config.bind = [f"127.0.0.1:{port}"]
    config.accesslog = None
    config.include_server_header = False
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    await worker_serve(
        wrap_app(app, config.wsgi_max_body_size, "asgi"), config, shutdown_trigger=stop.wait
    )


if __name__ == "__main__":
    asyncio.run(serve(int(sys.argv[1]), sys.argv[2]))
