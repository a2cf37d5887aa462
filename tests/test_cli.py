"""The `manager.py` commands through Quart's CLI runner (as flaskr tests its commands): they read
their settings from the environment, prompt where the original did, and a bad setting is one
line naming the variable with exit code 2."""

from __future__ import annotations

import asyncio

import pytest
from quart import Quart
from sqlalchemy import select

from app.cli import EXIT_CONFIGURATION_ERROR
from app.db import Database
from app.factory import create_app
from app.models import User
from tests.conftest import TEST_SECRET_KEY, make_settings


@pytest.fixture
def database_env(tmp_path) -> dict[str, str]:
    return {
        "APP_ENV": "testing",
        "SECRET_KEY": TEST_SECRET_KEY,
        "DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path}/cli.db",
    }


@pytest.fixture
def cli_app(database_env) -> Quart:
    return create_app(make_settings(database_env["DATABASE_URL"]))


def admins(database_url: str) -> list[tuple[str, int]]:
    async def query() -> list[tuple[str, int]]:
        database = Database(make_settings(database_url))
        await database.connect()
        try:
            async with database.session() as session:
                rows = await session.execute(select(User.name, User.role))
                return [(name, role) for name, role in rows]
        finally:
            await database.dispose()

    return asyncio.run(query())


def test_init_db_create_admin_and_clear_db(cli_app, database_env) -> None:
    runner = cli_app.test_cli_runner()
    first = runner.invoke(args=["init-db"], env=database_env)
    assert first.exit_code == 0, first.output
    assert first.output.startswith("database migrated from (empty) to ")
    again = runner.invoke(args=["init-db"], env=database_env)
    assert "already at" in again.output

    short = runner.invoke(
        args=["create-admin", "--name", "root"], input="short\nshort\n", env=database_env
    )
    assert short.exit_code != 0 and "at least 8 characters" in short.output
    created = runner.invoke(
        args=["create-admin", "--name", "root"], input="PASSWORD\nPASSWORD\n", env=database_env
    )
    assert created.exit_code == 0, created.output
    assert "admin 'root' created" in created.output
    assert admins(database_env["DATABASE_URL"]) == [("root", 1)]

    refused = runner.invoke(args=["clear-db"], input="n\n", env=database_env)
    assert refused.exit_code == 1 and admins(database_env["DATABASE_URL"]) == [("root", 1)]
    cleared = runner.invoke(args=["clear-db"], input="y\n", env=database_env)
    assert cleared.exit_code == 0 and "to (empty)" in cleared.output


@pytest.mark.parametrize(
    ("variable", "value"),
    [("SECRET_KEY", "short"), ("DB_POOL_SIZE", "many"), ("APP_ENV", "staging")],
)
def test_a_bad_setting_is_one_line_and_exit_2(cli_app, database_env, variable, value) -> None:
    result = cli_app.test_cli_runner().invoke(
        args=["init-db"], env={**database_env, "APP_ENV": "production", variable: value}
    )
    assert result.exit_code == EXIT_CONFIGURATION_ERROR
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and variable in lines[0] and "Traceback" not in result.output


@pytest.mark.parametrize(
    ("variables", "named"),
    [
        ({"REDIS_SENTINELS": "127.0.0.1:26379"}, "REDIS_SENTINEL_MASTER"),
        ({"REDIS_SENTINEL_MASTER": "mymaster"}, "REDIS_SENTINEL_MASTER"),
        (
            {
                "REDIS_SENTINELS": "127.0.0.1:26379",
                "REDIS_SENTINEL_MASTER": "mymaster",
                "REDIS_URL": "redis://127.0.0.1:6379/0",
            },
            "REDIS_SENTINELS",
        ),
        ({"REDIS_SENTINELS": "127.0.0.1", "REDIS_SENTINEL_MASTER": "m"}, "REDIS_SENTINELS"),
        ({"REDIS_SENTINELS": "h:70000", "REDIS_SENTINEL_MASTER": "m"}, "REDIS_SENTINELS"),
        ({"REDIS_SENTINEL_PASSWORD": "secret"}, "REDIS_SENTINEL_PASSWORD"),
        ({"REDIS_PASSWORD": "secret", "REDIS_URL": "redis://h:6379/0"}, "REDIS_PASSWORD"),
        ({"REDIS_DB": "3"}, "REDIS_DB"),
    ],
)
def test_a_bad_redis_topology_is_one_line_naming_the_variable_and_exit_2(
    cli_app, database_env, variables, named
) -> None:
    result = cli_app.test_cli_runner().invoke(
        args=["init-db"], env={**database_env, "APP_ENV": "production", **variables}
    )
    assert result.exit_code == EXIT_CONFIGURATION_ERROR, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and f"{named}:" in lines[0] and "Traceback" not in result.output


def test_bind_and_workers_come_from_settings_and_arguments_win(monkeypatch, tmp_path) -> None:
    from app.cli import hypercorn_config
    from app.settings import Settings

    monkeypatch.setenv("BIND", "127.0.0.1:8001, [::1]:8001")
    monkeypatch.setenv("WEB_CONCURRENCY", "3")
    settings = Settings(app_env="testing", secret_key=TEST_SECRET_KEY)
    config = hypercorn_config(settings)
    assert (config.bind, config.workers) == (["127.0.0.1:8001", "[::1]:8001"], 3)
    config = hypercorn_config(settings, bind="0.0.0.0:9000", workers=1)
    assert (config.bind, config.workers) == (["0.0.0.0:9000"], 1)
    default = hypercorn_config(Settings(app_env="testing", secret_key=TEST_SECRET_KEY, bind=""))
    assert default.bind == ["127.0.0.1:8000"]  # hypercorn.toml's


def test_keep_alive_and_frame_size_come_from_settings(monkeypatch) -> None:
    from app.cli import hypercorn_config
    from app.settings import Settings

    settings = Settings(app_env="testing", secret_key=TEST_SECRET_KEY)
    default = hypercorn_config(settings)
    assert default.keep_alive_timeout == 75  # hypercorn.toml's: above the proxies' 60 s
    assert default.websocket_max_message_size == 65536
    monkeypatch.setenv("HTTP_KEEP_ALIVE_TIMEOUT", "620")
    monkeypatch.setenv("WS_MAX_MESSAGE_BYTES", "4096")
    config = hypercorn_config(Settings(app_env="testing", secret_key=TEST_SECRET_KEY))
    assert (config.keep_alive_timeout, config.websocket_max_message_size) == (620, 4096)


def test_a_bad_worker_count_is_a_configuration_error(cli_app, database_env) -> None:
    result = cli_app.test_cli_runner().invoke(
        args=["init-db"], env={**database_env, "WEB_CONCURRENCY": "0"}
    )
    assert result.exit_code == EXIT_CONFIGURATION_ERROR and "WEB_CONCURRENCY" in result.output
