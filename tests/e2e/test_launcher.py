"""tests/e2e/launcher.py: a server forked from the tests' fork server behaves as `python -m app
serve` started afresh in the same working directory with the same environment."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.e2e.launcher import launch

pytestmark = pytest.mark.e2e

# A setting `serve` refuses before any worker starts: one line, exit code 2.
REFUSED = {"APP_ENV": "production", "SECRET_KEY": "k" * 40, "REDIS_URL": "redis://:::/x"}


def test_a_launched_serve_exits_and_writes_as_a_fresh_one_does(tmp_path: Path) -> None:
    env = {"PATH": os.environ.get("PATH", ""), "HOME": str(tmp_path), **REFUSED}
    fresh = subprocess.run(
        [sys.executable, "-m", "app", "serve"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    log = tmp_path / "launched.log"
    launched = launch(["serve"], tmp_path, env, log)
    assert launched.wait(60) == fresh.returncode == 2
    assert launched.poll() == launched.returncode == 2
    assert log.read_text().splitlines() == (fresh.stdout + fresh.stderr).splitlines()
    assert "REDIS_URL" in log.read_text()
