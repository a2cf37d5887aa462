"""Settings from the environment, and the refusals that keep production safe."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from app.settings import (
    DEFAULT_DATABASE_URL,
    DEVELOPMENT_SECRET_KEY,
    Settings,
    describe_settings_error,
)


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch, tmp_path) -> None:
    for name in ("APP_ENV", "SECRET_KEY", "DATABASE_URL", "DISPLAY_TIMEZONE", "DB_POOL_SIZE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(tmp_path)  # no stray .env


def test_production_refuses_a_missing_secret_key() -> None:
    with pytest.raises(ValidationError, match="SECRET_KEY"):
        Settings()


def test_production_refuses_the_development_key(monkeypatch) -> None:
    monkeypatch.setenv("SECRET_KEY", DEVELOPMENT_SECRET_KEY)
    with pytest.raises(ValidationError, match="SECRET_KEY"):
        Settings()


def test_development_runs_on_the_embedded_defaults(monkeypatch) -> None:
    monkeypatch.setenv("APP_ENV", "development")
    settings = Settings()
    assert settings.database_url == DEFAULT_DATABASE_URL and settings.is_sqlite
    assert settings.redis_url is None
    assert settings.online_last_minutes == 5
    assert settings.display_timezone == "Asia/Shanghai"


def test_environment_variables_are_read(monkeypatch) -> None:
    monkeypatch.setenv("SECRET_KEY", "s" * 32)
    monkeypatch.setenv("DATABASE_URL", "mysql+aiomysql://u:p@db:3306/app")
    monkeypatch.setenv("DB_POOL_SIZE", "20")
    settings = Settings()
    assert not settings.is_sqlite and settings.sqlite_path is None
    assert settings.db_pool_size == 20


def test_gc_thresholds_are_three_comma_separated_counts(monkeypatch) -> None:
    assert Settings(app_env="development").gc_thresholds == (100_000, 50, 100)
    monkeypatch.setenv("GC_THRESHOLDS", "700, 10, 10")
    assert Settings(app_env="development").gc_thresholds == (700, 10, 10)


def test_dotenv_file_is_read(tmp_path) -> None:
    (tmp_path / ".env").write_text("APP_ENV=development\nDISPLAY_TIMEZONE=Europe/Paris\n")
    # The service reads ./.env (tests/conftest.py turns that off for every other test).
    assert Settings(_env_file=".env").display_timezone == "Europe/Paris"


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("DISPLAY_TIMEZONE", "Mars/Olympus"),
        ("DB_POOL_SIZE", "0"),
        ("APP_ENV", "staging"),
        ("GC_THRESHOLDS", "700,10"),
        ("GC_THRESHOLDS", "700,10,-1"),
        ("GC_THRESHOLDS", "many,10,10"),
    ],
)
def test_bad_values_are_refused_naming_the_setting(monkeypatch, name, value) -> None:
    monkeypatch.setenv("APP_ENV", "development")
    monkeypatch.setenv(name, value)
    with pytest.raises(ValidationError, match=name.lower()):
        Settings()


def test_sqlite_path() -> None:
    settings = Settings(app_env="development", database_url="sqlite+aiosqlite:///var/x.db")
    assert str(settings.sqlite_path) == "var/x.db"
    memory = Settings(app_env="development", database_url="sqlite+aiosqlite:///:memory:")
    assert memory.sqlite_path is None


def test_testing_also_refuses_the_development_key() -> None:
    with pytest.raises(ValidationError, match="SECRET_KEY"):
        Settings(app_env="testing")


def test_flask_apscheduler_jobs_name_is_accepted(monkeypatch) -> None:
    monkeypatch.setenv("APP_ENV", "development")
    monkeypatch.setenv("JOBS", '[{"id": "a", "func": "app.scheduler.jobs:print_test"}]')
    [job] = Settings().scheduler_jobs  # validated by the API's model (a discriminated union)
    assert job.model_dump(exclude_unset=True) == {
        "id": "a",
        "func": "app.scheduler.jobs:print_test",
    }
    monkeypatch.setenv("SCHEDULER_JOBS", "[]")
    assert Settings().scheduler_jobs == []  # SCHEDULER_JOBS wins over JOBS


@pytest.mark.parametrize("app_env", ["production", "testing"])
def test_a_secret_key_shorter_than_32_characters_is_refused(monkeypatch, app_env) -> None:
    monkeypatch.setenv("APP_ENV", app_env)
    monkeypatch.setenv("SECRET_KEY", "s" * 31)
    with pytest.raises(ValidationError, match="at least 32 characters"):
        Settings()
    monkeypatch.setenv("SECRET_KEY", "s" * 32)
    assert Settings().secret_key == "s" * 32


def test_a_settings_error_is_one_line_naming_the_variable(monkeypatch) -> None:
    from app.settings import describe_settings_error

    monkeypatch.setenv("APP_ENV", "development")
    monkeypatch.setenv("DB_POOL_SIZE", "many")
    with pytest.raises(ValidationError) as caught:
        Settings()
    line = describe_settings_error(caught.value)
    assert "\n" not in line and line.startswith("configuration error: DB_POOL_SIZE: ")


def test_scheduler_jobs_are_validated_at_start_naming_the_field(monkeypatch) -> None:
    monkeypatch.setenv(
        "SCHEDULER_JOBS",
        '[{"id": "a", "func": "app.scheduler.jobs:print_test", "trigger": "interval"}]',
    )
    with pytest.raises(ValidationError) as raised:
        Settings()
    assert "give weeks, days, hours, minutes or seconds" in describe_settings_error(raised.value)


def test_a_sentinel_topology_is_read(monkeypatch) -> None:
    monkeypatch.setenv("APP_ENV", "development")
    monkeypatch.setenv("REDIS_SENTINELS", "10.0.0.1:26379, sentinel-2:26380,[::1]:26381")
    monkeypatch.setenv("REDIS_SENTINEL_MASTER", "quart")
    monkeypatch.setenv("REDIS_DB", "2")
    settings = Settings()
    assert settings.redis_sentinel_addresses == [
        ("10.0.0.1", 26379),
        ("sentinel-2", 26380),
        ("::1", 26381),
    ]
    assert settings.redis_configured and settings.redis_db == 2
    # Every shared part defaults to Redis, as with REDIS_URL.
    assert settings.effective_presence_backend == "redis"
    assert settings.effective_scheduler_jobstore == "redis"


@pytest.mark.parametrize(
    "url", ["redis://:::/x", "http://127.0.0.1:6379/0", "redis://", "redis://h:notaport/0"]
)
def test_a_redis_url_redis_py_would_refuse_stops_the_settings(monkeypatch, url) -> None:
    monkeypatch.setenv("APP_ENV", "development")
    with pytest.raises(ValidationError, match="not a Redis URL"):
        Settings(redis_url=url)


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("", ""),
        ("redis://127.0.0.1:6379/7", "redis://127.0.0.1:6379/7"),
        ("unix:///run/redis.sock", "unix:///run/redis.sock"),
    ],
)
def test_an_empty_redis_url_means_unset(monkeypatch, url, expected) -> None:
    """Compose overrides clear REDIS_URL with "" (the Sentinel variant): not an error."""
    monkeypatch.setenv("APP_ENV", "development")
    settings = Settings(redis_url=url)
    assert settings.redis_url == expected
    assert bool(settings.redis_url) is bool(expected)
