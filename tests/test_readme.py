"""The README's quick start, run literally in a fresh copy of the repository.

Every `sh` block between the `quickstart` markers runs as written, in order, in a copy of the
tracked files (sharing this checkout's installed `.venv`). Two liberties, both needed to run it
beside other work on one machine: `make run` is started in the background with `BIND` (a
documented setting) on a free port, and `localhost:8000` in the later blocks is pointed at that
port. `make test` is left out: it is the command running this test.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
from pathlib import Path

import pytest

from tests.e2e.server import PROJECT_ROOT, free_port
from tests.waiting import answers, poll

pytestmark = pytest.mark.e2e

README = PROJECT_ROOT / "README.md"


def quickstart_blocks() -> list[list[str]]:
    """The quick start's `sh` blocks, each as its commands (continuation lines joined)."""
    section = README.read_text().split("<!-- quickstart")[1].split("<!-- /quickstart -->")[0]
    blocks = re.findall(r"```sh\n(.*?)```", section, flags=re.DOTALL)
    return [re.sub(r"\\\n\s*", " ", block).strip().splitlines() for block in blocks]


def fresh_copy(target: Path) -> None:
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=PROJECT_ROOT, capture_output=True, check=True,
    ).stdout.decode().split("\0")  # fmt: skip
    for name in filter(None, listed):
        origin = PROJECT_ROOT / name
        if origin.is_file():
            (target / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(origin, target / name)  # keeps mtimes: make sees .venv up to date
    (target / ".venv").symlink_to(PROJECT_ROOT / ".venv")
    # The venv is shared: make in the copy must never reinstall this checkout's package from
    # the copy (an editable install pointing at a folder about to be deleted). What it installs
    # from counts as no newer than the venv's stamp.
    stamp = PROJECT_ROOT / ".venv" / ".installed"
    if stamp.exists():
        installed = stamp.stat().st_mtime
        for name in ("pyproject.toml", "requirements-dev.lock"):
            copied = target / name
            mtime = min(copied.stat().st_mtime, installed - 1)
            os.utime(copied, (mtime, mtime))


def test_the_quickstart_runs_as_written(tmp_path) -> None:
    first, *others = quickstart_blocks()
    assert [line.split("#")[0].strip() for line in first] == ["make run", "make test"]
    checkout = tmp_path / "quart-framework"
    checkout.mkdir()
    fresh_copy(checkout)
    port = free_port()
    env = {
        "PATH": os.environ["PATH"],
        "HOME": str(tmp_path),
        "BIND": f"127.0.0.1:{port}",
        "PYTHONUNBUFFERED": "1",
    }
    log_path = tmp_path / "make-run.log"
    with log_path.open("wb") as log:
        server = subprocess.Popen(
            ["bash", "-c", first[0]], cwd=checkout, env=env, stdout=log, stderr=log,
            start_new_session=True,
        )  # fmt: skip
    try:

        def serving() -> bool:
            assert server.poll() is None, log_path.read_text()  # make run must not exit
            return answers(f"http://127.0.0.1:{port}/healthz")

        poll(serving, timeout=60, interval=0.2)
        dotenv = (checkout / ".env").read_text()
        assert "APP_ENV=development" in dotenv and re.search(r"SECRET_KEY=\S{40,}", dotenv)

        outputs = []
        for block in others:
            script = "set -e\n" + "\n".join(block).replace("localhost:8000", f"localhost:{port}")
            result = subprocess.run(
                ["bash", "-c", script], cwd=checkout, env=env, input="PASSWORD\nPASSWORD\n",
                capture_output=True, text=True, timeout=120,
            )  # fmt: skip
            assert result.returncode == 0, f"{block}\n{result.stdout}\n{result.stderr}"
            outputs.append(result.stdout)
        try_it, start_over = outputs
        assert "admin 'root' created" in try_it
        assert try_it.count('"status":"succeed"') == 2, try_it
        assert '"name":"alice"' in try_it and '"name":"root"' in try_it
        assert "all tables dropped" in start_over
        assert "database migrated from (empty) to" in start_over
        assert "admin 'root' created" in start_over
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        try:
            server.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
            server.wait()
