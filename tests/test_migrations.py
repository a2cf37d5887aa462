"""Alembic migrations: they apply on MariaDB and SQLite, agree with the models, and revert."""

from __future__ import annotations

import asyncio

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import inspect
from sqlalchemy.ext.asyncio import create_async_engine

from app.db import downgrade_to_base, upgrade_to_head
from app.models import Base
from tests.conftest import _recreate_mysql_database, make_settings
from tests.resources import mysql_database_url


def _differences(sync_connection) -> list:
    context = MigrationContext.configure(sync_connection, opts={"compare_type": True})
    return compare_metadata(context, Base.metadata)


async def _schema_report(url: str) -> tuple[list, list[str]]:
    engine = create_async_engine(url)
    try:
        async with engine.connect() as connection:
            differences = await connection.run_sync(_differences)
            tables = await connection.run_sync(lambda c: sorted(inspect(c).get_table_names()))
    finally:
        await engine.dispose()
    return differences, tables


@pytest.fixture(params=["sqlite", "mysql"])
def empty_database_url(request, tmp_path) -> str:
    if request.param == "sqlite":
        return f"sqlite+aiosqlite:///{tmp_path}/migrations.db"
    url = mysql_database_url("migrations")
    asyncio.run(_recreate_mysql_database(url))
    return url


def test_upgrade_matches_models_and_downgrade_reverts(empty_database_url) -> None:
    settings = make_settings(empty_database_url)
    outcome = upgrade_to_head(settings)
    assert outcome.before is None and outcome.after is not None
    assert outcome.describe() == f"database migrated from (empty) to {outcome.after}"
    again = upgrade_to_head(settings)
    assert (again.before, again.after) == (outcome.after, outcome.after)
    assert again.describe() == f"database already at {outcome.after}; nothing to do"
    differences, tables = asyncio.run(_schema_report(empty_database_url))
    assert differences == [], "models and migrations disagree; run alembic revision --autogenerate"
    assert tables == [
        "alembic_version",
        "api_tokens",
        "blog_tags",
        "blogs",
        "idempotency_records",
        "online_snapshots",
        "scheduler_runs",
        "tags",
        "users",
    ]

    assert downgrade_to_base(settings).after is None
    _, tables = asyncio.run(_schema_report(empty_database_url))
    assert tables == ["alembic_version"]

    upgrade_to_head(settings)  # and back again, as `clear-db` then `init-db` do
    differences, _ = asyncio.run(_schema_report(empty_database_url))
    assert differences == []


def test_concurrent_upgrades_on_mysql_serialize(tmp_path) -> None:
    """Several containers run `serve --migrate` at once: every one must succeed."""
    import os
    import subprocess
    import sys

    url = mysql_database_url("migrationsrace")
    asyncio.run(_recreate_mysql_database(url))
    env = {"PATH": os.environ["PATH"], "APP_ENV": "development", "DATABASE_URL": url}
    runs = [
        subprocess.Popen(
            [sys.executable, "-m", "app", "init-db"],
            env=env,
            cwd=tmp_path,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )
        for _ in range(3)
    ]
    outputs = [(run.wait(60), run.stdout.read().decode()) for run in runs]
    assert all(code == 0 for code, _ in outputs), outputs
    differences, tables = asyncio.run(_schema_report(url))
    assert differences == [] and "users" in tables
