"""Commands of the original's `manager.py` (runserver, init_db, clear_db), as `python -m app …`.

The database commands (app.commands) are also on the `quart` CLI: `quart --app app.asgi:app
init-db`.
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import click

from app.commands import DATABASE_COMMANDS, EXIT_CONFIGURATION_ERROR, load_settings
from app.resources import resource_path
from app.settings import Settings

if TYPE_CHECKING:
    from hypercorn.config import Config as HypercornConfig

HYPERCORN_CONFIG = resource_path("hypercorn.toml")


def hypercorn_config(
    settings: Settings,
    config_path: Path = HYPERCORN_CONFIG,
    *,
    bind: str | None = None,
    workers: int | None = None,
) -> HypercornConfig:
    """`hypercorn.toml` with the settings' `BIND` (comma-separated addresses), `WEB_CONCURRENCY`
    (worker processes; explicit arguments win over both), `WS_MAX_MESSAGE_BYTES` and, when set,
    `HTTP_KEEP_ALIVE_TIMEOUT`."""
    from hypercorn.config import Config

    config = Config.from_toml(config_path)
    addresses = [a.strip() for a in bind.split(",") if a.strip()] if bind else settings.bind
    if addresses:
        config.bind = addresses
    workers = workers or settings.web_concurrency
    if workers is not None:
        config.workers = workers
    config.application_path = "app.asgi:app"
    # Hypercorn refuses larger frames with 1009 before the app sees them.
    config.websocket_max_message_size = settings.ws_max_message_bytes
    if settings.http_keep_alive_timeout is not None:
        config.keep_alive_timeout = settings.http_keep_alive_timeout
    return config


@click.command("serve")
@click.option("--bind", help="address to listen on, e.g. 0.0.0.0:8000 (default: BIND or toml)")
@click.option("--workers", type=click.IntRange(1, 64), help="worker processes")
@click.option("--migrate/--no-migrate", default=False, help="apply migrations before serving")
@click.option(
    "--server",
    type=click.Choice(["hypercorn", "uvicorn"]),
    help="the HTTP server (default: SERVER, or hypercorn)",
)
def serve_command(bind: str | None, workers: int | None, migrate: bool, server: str | None) -> None:
    """Serve the app with Hypercorn (or Uvicorn) and hypercorn.toml (the original's
    `runserver`)."""
    import os

    from app.hypercorn_patches import UnsupportedServerVersion, check_versions
    from app.overrides import UnsupportedDependency, check_overrides
    from app.supervisor import run_workers

    if server is not None:
        os.environ["SERVER"] = server  # the workers read their settings from the environment
    settings = load_settings()  # fail here, with one clear line, on a bad configuration
    try:
        check_versions()  # the server patches apply to known versions only
        check_overrides()  # so does every other override of a package's internals
        if settings.server == "uvicorn":
            from app.uvicorn_server import check_versions as check_uvicorn_versions

            check_uvicorn_versions()
    except (UnsupportedServerVersion, UnsupportedDependency, RuntimeError) as error:
        click.echo(f"cannot serve: {error}", err=True)
        sys.exit(EXIT_CONFIGURATION_ERROR)
    from app.redis_client import topology_error
    from app.request_log import configure_logging

    wrong = topology_error(settings)  # a reachable Redis of the wrong kind: stop here
    if wrong is not None:
        click.echo(f"configuration error: {wrong}", err=True)
        sys.exit(EXIT_CONFIGURATION_ERROR)
    configure_logging(settings)
    if migrate:
        from app.db import upgrade_to_head

        logging.getLogger("app").info("%s", upgrade_to_head(settings).describe())
    config = hypercorn_config(settings, bind=bind, workers=workers)
    if settings.server == "uvicorn" and (config.ssl_enabled or config.quic_bind):
        click.echo(
            "cannot serve: --server uvicorn serves plain HTTP/1.1 and websockets only; TLS, "
            "HTTP/2 and HTTP/3 in hypercorn.toml need --server hypercorn",
            err=True,
        )
        sys.exit(EXIT_CONFIGURATION_ERROR)
    if config.workers > 1 and not settings.redis_configured:
        logging.getLogger("app").warning(
            "%d workers without REDIS_URL: presence, chat rooms, rate limits and scheduled jobs "
            "are per worker (each worker runs the jobs); set REDIS_URL (or REDIS_SENTINELS) to "
            "share them",
            config.workers,
        )
    sys.exit(run_workers(config))


@click.group()
def main() -> None:
    """quart-framework service commands."""


__all__ = ["EXIT_CONFIGURATION_ERROR", "hypercorn_config", "load_settings", "main"]

main.add_command(serve_command)
for _command in DATABASE_COMMANDS:
    main.add_command(_command)
