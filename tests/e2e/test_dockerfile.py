"""The Dockerfile, without a Docker engine: hadolint passes, and its CMD and HEALTHCHECK work
when run with its ENV on exactly the files it COPYs."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

from tests.conftest import TEST_SECRET_KEY
from tests.e2e.server import PROJECT_ROOT, run_server

DOCKERFILE = PROJECT_ROOT / "Dockerfile"


def instructions() -> list[tuple[str, str]]:
    text = re.sub(r"\\\n\s*", " ", DOCKERFILE.read_text())
    lines = [line.strip() for line in text.splitlines()]
    return [tuple(line.split(None, 1)) for line in lines if line and not line.startswith("#")]


def test_hadolint_passes() -> None:
    hadolint = shutil.which("hadolint", path=str(Path(sys.executable).parent)) or "hadolint"
    result = subprocess.run([hadolint, str(DOCKERFILE)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_cmd_and_healthcheck_work_on_the_copied_files(tmp_path) -> None:
    env: dict[str, str] = {}
    command = healthcheck = None
    for keyword, argument in instructions():
        if keyword == "COPY":
            *sources, _ = argument.split()
            for source in sources:
                origin = PROJECT_ROOT / source
                target = tmp_path / source
                if origin.is_dir():
                    shutil.copytree(origin, target, ignore=shutil.ignore_patterns("__pycache__"))
                else:
                    shutil.copy(origin, target)
        elif keyword == "ENV":
            env.update(re.findall(r"(\w+)=(\S+)", argument))
        elif keyword == "CMD":
            command = json.loads(argument)
        elif keyword == "HEALTHCHECK":
            healthcheck = json.loads(argument.split("CMD", 1)[1])
    assert command[:2] == ["python", "-m"] and healthcheck[0] == "python"
    (tmp_path / "var").mkdir()

    env.pop("BIND")  # run_server binds a free loopback port instead of 0.0.0.0:8000
    env["SECRET_KEY"] = TEST_SECRET_KEY
    with run_server(
        tmp_path,
        env,
        workers=int(env.pop("WEB_CONCURRENCY")),
        command=[sys.executable, *command[1:]],
        ready_path="/healthz",
    ) as server:
        port = server.base_url.rsplit(":", 1)[1]
        probe = [sys.executable, *healthcheck[1:]]
        probe[-1] = probe[-1].replace("127.0.0.1:8000", f"127.0.0.1:{port}")
        assert subprocess.run(probe, timeout=10).returncode == 0
        assert server.stop() == 0
    assert (tmp_path / "var" / "quart-framework.db").exists()  # --migrate created the schema
    assert '"message"' in server.log()  # LOG_FORMAT=json
