"""Alembic environment: runs migrations over the service's async drivers (aiomysql, aiosqlite)."""

import asyncio
import os
from logging.config import fileConfig

from alembic import context
from sqlalchemy import event, pool, text
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import create_async_engine

from app.db import enable_sqlite_integrity
from app.models import Base
from app.settings import DEFAULT_DATABASE_URL

config = context.config
if config.config_file_name is not None and not config.attributes.get("database_url"):
    # Only when run as the `alembic` command: the service configures its own logging.
    fileConfig(config.config_file_name, disable_existing_loggers=False)

target_metadata = Base.metadata


def database_url() -> str:
    return config.attributes.get("database_url") or os.environ.get(
        "DATABASE_URL", DEFAULT_DATABASE_URL
    )


def run_migrations_offline() -> None:
    context.configure(
        url=database_url(),
        target_metadata=target_metadata,
        literal_binds=True,
        dialect_opts={"paramstyle": "named"},
        render_as_batch=True,
    )
    with context.begin_transaction():
        context.run_migrations()


def do_run_migrations(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        # SQLite cannot ALTER most things: batch mode rebuilds the table instead.
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
    )
    migration_context = context.get_context()
    before = migration_context.get_current_revision()
    with context.begin_transaction():
        context.run_migrations()
    # Read back by app.db for the CLI's message (before, after).
    config.attributes["revisions"] = (before, migration_context.get_current_revision())


async def run_async_migrations() -> None:
    url = database_url()
    connect_args = {"charset": "utf8mb4"} if url.startswith(("mysql", "mariadb")) else {}
    engine = create_async_engine(url, poolclass=pool.NullPool, connect_args=connect_args)
    if engine.dialect.name == "sqlite":
        event.listen(engine.sync_engine, "connect", enable_sqlite_integrity)
    async with engine.connect() as connection:
        if connection.dialect.name in ("mysql", "mariadb"):
            # Containers that start together migrate one at a time; the later ones find head.
            await connection.execute(text("SELECT GET_LOCK('quart_framework_migrations', 120)"))
            await connection.commit()  # the lock belongs to the session, not the transaction
        try:
            await connection.run_sync(do_run_migrations)
            await connection.commit()
        finally:
            if connection.dialect.name in ("mysql", "mariadb"):
                await connection.execute(text("SELECT RELEASE_LOCK('quart_framework_migrations')"))
    await engine.dispose()


def run_migrations_online() -> None:
    asyncio.run(run_async_migrations())


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
