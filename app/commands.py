"""The database commands of the original's `manager.py` (init_db, clear_db) and create-admin:
on `python -m app` (app.cli) and on the `quart` CLI (app.factory adds them).

app.db (SQLAlchemy, about 0.5 s to import) is imported by the commands that use it: `python -m
app serve` imports this module in its supervisor, which never touches the database."""

from __future__ import annotations

import sys

import click
from pydantic import ValidationError

from app.settings import Settings, describe_settings_error

EXIT_CONFIGURATION_ERROR = 2
COMMAND_DB_TIMEOUT_SECONDS = 60.0


def load_settings() -> Settings:
    """The settings from the environment; on a bad value, one line naming the variable on
    stderr and exit code 2 (no traceback)."""
    try:
        return Settings()
    except ValidationError as error:
        click.echo(describe_settings_error(error), err=True)
        sys.exit(EXIT_CONFIGURATION_ERROR)


@click.command("init-db")
def init_db_command() -> None:
    """Create or upgrade the schema: `alembic upgrade head` (the original's `init_db`)."""
    from app.db import upgrade_to_head

    settings = load_settings()
    click.echo(upgrade_to_head(settings).describe())


@click.command("clear-db")
@click.option("--yes", is_flag=True, help="do not ask for confirmation")
def clear_db_command(yes: bool) -> None:
    """Drop every table and its data: `alembic downgrade base` (the original's `clear_db`)."""
    from app.db import downgrade_to_base

    settings = load_settings()
    if not yes:
        click.confirm("Drop all tables and their data?", abort=True)
    outcome = downgrade_to_base(settings)
    click.echo(f"{outcome.describe()}: all tables dropped; run init-db to recreate them")


@click.command("create-admin")
@click.option("--name", prompt=True, help="the admin's user name")
@click.option(
    "--password",
    prompt=True,
    hide_input=True,
    confirmation_prompt=True,
    help="at least 8 characters (prompted, hidden, when left out)",
)
def create_admin_command(name: str, password: str) -> None:
    """Create an admin (role 1) with a password, or make an existing user one and reset their
    password. The first admin of a service with API_AUTH=required comes from here."""
    import asyncio

    from app.names import refusal
    from app.services.admins import LookAlikeName, ensure_admin_account

    if len(password) < 8:
        raise click.BadParameter("at least 8 characters", param_hint="--password")
    reason = refusal(name)
    if reason is not None:
        raise click.BadParameter(reason, param_hint="--name")
    try:
        # DB_TIMEOUT bounds a request's database work; a one-off command on a busy host may
        # take longer (its statements timed out at 5 s with three test suites on 2 cores).
        settings = load_settings()
        settings = settings.model_copy(
            update={"db_timeout": max(settings.db_timeout, COMMAND_DB_TIMEOUT_SECONDS)}
        )
        created = asyncio.run(ensure_admin_account(settings, name=name, password=password))
    except LookAlikeName as error:
        raise click.BadParameter(str(error), param_hint="--name") from None
    click.echo(f"admin {name!r} {'created' if created else 'updated'}")


DATABASE_COMMANDS = (init_db_command, clear_db_command, create_admin_command)
