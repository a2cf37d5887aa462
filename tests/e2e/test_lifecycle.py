"""Serving on the embedded default, and stopping on SIGTERM like a container runtime does."""

from __future__ import annotations

import re
import subprocess
import sys
import time

import httpx

from tests.e2e.server import run_cli, run_server


def test_embedded_default_runs_with_migrations_and_stops_cleanly(tmp_path) -> None:
    env = {"APP_ENV": "development"}
    run_cli(
        tmp_path, env, ["init-db"], ["create-admin", "--name", "root", "--password", "s3cret-pass"]
    )
    assert (tmp_path / "var" / "quart-framework.db").exists()
    with run_server(tmp_path, env, workers=1) as server:
        url = server.base_url + "/api/v1/tag"
        assert httpx.post(url, json={"name": "anonymous"}).status_code == 401
        response = httpx.post(url, json={"name": "embedded"}, auth=("root", "s3cret-pass"))
        assert response.status_code == 200, response.text
        started = time.monotonic()
        assert server.stop() == 0
        assert time.monotonic() - started < 9  # within hypercorn.toml's graceful_timeout
    log = server.log()
    assert "serving with database sqlite+aiosqlite:///var/quart-framework.db" in log
    # The worker froze what startup built, so full collections do not stall its loop.
    frozen = re.search(r"startup objects frozen: (\d+)", log)
    assert frozen is not None and int(frozen.group(1)) > 10_000, log
    # ... and set the collector's thresholds (GC_THRESHOLDS' default).
    assert "collector thresholds (100000, 50, 100)" in log


def test_production_refuses_to_start_without_secret_key(tmp_path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "app", "serve"],
        env={"APP_ENV": "production", "PATH": ""},
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode != 0
    assert "SECRET_KEY" in result.stderr


def test_clear_db_then_init_db(tmp_path) -> None:
    env = {"APP_ENV": "development", "PATH": ""}
    run = lambda *args: subprocess.run(  # noqa: E731
        [sys.executable, "-m", "app", *args],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
    )
    assert run("init-db").returncode == 0
    refused = run("clear-db")  # asks first; no answer on stdin means no
    assert refused.returncode != 0
    cleared = run("clear-db", "--yes")
    assert cleared.returncode == 0 and "dropped" in cleared.stdout
    assert run("init-db").returncode == 0
