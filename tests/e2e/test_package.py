"""The package and the image, without a Docker engine.

The Dockerfile's build stage is run on exactly the files it COPYs (its `pip wheel`), the wheel
is installed with `requirements.lock` into a new venv outside the checkout (the runtime stage;
installed with uv rather than pip only for speed: same lock, same wheel), and the service runs
from an empty folder: `init-db`, `serve` and requests that need the bundled templates,
migrations and Hypercorn settings. Then the image's CMD and HEALTHCHECK run with its ENV.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from tests.conftest import TEST_SECRET_KEY
from tests.e2e.server import PROJECT_ROOT, run_server

pytestmark = pytest.mark.e2e

DOCKERFILE = PROJECT_ROOT / "Dockerfile"
UV = Path(sys.executable).parent / "uv"


@dataclass
class Stage:
    name: str | None
    instructions: list[tuple[str, str]]

    def all(self, keyword: str) -> list[str]:
        return [argument for word, argument in self.instructions if word == keyword]


def stages() -> list[Stage]:
    text = re.sub(r"\\\n\s*", " ", DOCKERFILE.read_text())
    found: list[Stage] = []
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        keyword, argument = line.split(None, 1)
        if keyword == "FROM":
            alias = argument.split(" AS ")[1].strip() if " AS " in argument else None
            found.append(Stage(alias, []))
        found[-1].instructions.append((keyword, argument))
    return found


@dataclass
class Installed:
    venv: Path
    wheel: Path

    @property
    def python(self) -> Path:
        return self.venv / "bin" / "python"


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> Iterator[Installed]:
    """The build stage run on a copy of exactly what it COPYs, and the runtime stage's install
    (requirements.lock, then the wheel) into a venv outside the checkout."""
    root = tmp_path_factory.mktemp("image")
    build, runtime = stages()
    assert build.name == "build" and runtime.name is None
    source = root / "src"
    source.mkdir()
    for argument in build.all("COPY"):
        *sources, _ = argument.split()
        for name in sources:
            origin = PROJECT_ROOT / name
            if origin.is_dir():
                ignore = shutil.ignore_patterns("__pycache__")
                shutil.copytree(origin, source / name, ignore=ignore)
            else:
                shutil.copy(origin, source / name)
    [command] = build.all("RUN")
    words = shlex.split(command.replace("/wheels", str(root / "wheels")))
    assert words[:2] == ["pip", "wheel"]
    subprocess.run([sys.executable, "-m", *words], cwd=source, check=True, capture_output=True)
    [wheel] = (root / "wheels").glob("quart_framework-*.whl")

    lock_copies = [a for a in runtime.all("COPY") if a.startswith("requirements.lock ")]
    assert lock_copies, "the runtime stage installs the pinned dependencies of requirements.lock"
    venv = root / "venv"
    subprocess.run([UV, "venv", "--quiet", "--python", sys.executable, venv], check=True)
    subprocess.run(
        [UV, "pip", "install", "--quiet", "--python", venv / "bin" / "python",
         "--requirement", PROJECT_ROOT / "requirements.lock", wheel],
        check=True,
    )  # fmt: skip
    yield Installed(venv, wheel)


def test_hadolint_passes() -> None:
    hadolint = shutil.which("hadolint", path=str(Path(sys.executable).parent)) or "hadolint"
    result = subprocess.run([hadolint, str(DOCKERFILE)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_runtime_stage_holds_no_source_and_runs_as_a_user() -> None:
    _, runtime = stages()
    copied = [argument.split()[-2] for argument in runtime.all("COPY")]
    assert copied == ["requirements.lock", "/wheels"], copied
    [user] = runtime.all("USER")
    assert not user.startswith(("0", "root")), user


def test_the_wheel_carries_templates_migrations_and_hypercorn_settings(installed) -> None:
    import zipfile

    names = set(zipfile.ZipFile(installed.wheel).namelist())
    for name in (
        "app/_bundle/hypercorn.toml",
        "app/_bundle/alembic.ini",
        "app/_bundle/alembic/env.py",
        "app/_bundle/templates/chat.html",
    ):
        assert name in names
    migrations = {path.name for path in (PROJECT_ROOT / "alembic" / "versions").glob("*.py")}
    assert {Path(n).name for n in names if "/alembic/versions/" in n} == migrations
    scripts = {path.name for path in (PROJECT_ROOT / "app" / "realtime" / "scripts").glob("*.lua")}
    assert scripts and {Path(n).name for n in names if n.endswith(".lua")} == scripts


def test_the_installed_wheel_serves_from_an_empty_folder(installed, tmp_path) -> None:
    workdir = tmp_path / "empty"
    workdir.mkdir()
    env = {"APP_ENV": "development", "PATH": "/usr/bin:/bin", "HOME": str(tmp_path)}
    where = subprocess.run(
        [installed.python, "-c", "import app; print(app.__file__)"],
        cwd=workdir, env=env, capture_output=True, text=True, check=True,
    )  # fmt: skip
    assert Path(where.stdout.strip()).is_relative_to(installed.venv), where.stdout

    script = installed.venv / "bin" / "quart-framework"
    migrated = subprocess.run(
        [script, "init-db"], cwd=workdir, env=env, capture_output=True, text=True
    )
    assert migrated.returncode == 0, migrated.stderr
    assert "migrated from (empty) to" in migrated.stdout
    assert (workdir / "var" / "quart-framework.db").is_file()

    with run_server(workdir, env, command=[str(script), "serve"]) as server:
        with httpx.Client(base_url=server.base_url, timeout=10) as client:
            tags = client.get("/api/v1/tag")
            assert tags.status_code == 200 and tags.json()["code"] == 0
            chat = client.get("/chat")  # a bundled template
            assert chat.status_code == 200 and "<html" in chat.text.lower()
            assert client.get("/docs").status_code == 200
        assert server.stop() == 0


def test_cmd_and_healthcheck_work_with_the_image_env(installed, tmp_path) -> None:
    _, runtime = stages()
    env: dict[str, str] = {}
    for argument in runtime.all("ENV"):
        env.update(re.findall(r"(\w+)=(\S+)", argument))
    command = json.loads(runtime.all("CMD")[0])
    healthcheck = json.loads(runtime.all("HEALTHCHECK")[0].split("CMD", 1)[1])
    assert command[0] == "quart-framework" and healthcheck[0] == "python"
    workdir = tmp_path / "srv"
    (workdir / "var").mkdir(parents=True)  # the image's WORKDIR holds only var/

    env.pop("BIND")  # run_server binds a free loopback port instead of 0.0.0.0:8000
    env.update(SECRET_KEY=TEST_SECRET_KEY, PATH=f"{installed.venv / 'bin'}:/usr/bin:/bin")
    with run_server(
        workdir,
        env,
        workers=int(env.pop("WEB_CONCURRENCY")),
        command=command,
        ready_path="/healthz",
    ) as server:
        port = server.base_url.rsplit(":", 1)[1]
        probe = [str(installed.python), *healthcheck[1:]]
        probe[-1] = probe[-1].replace("127.0.0.1:8000", f"127.0.0.1:{port}")
        assert subprocess.run(probe, timeout=10).returncode == 0
        assert server.stop() == 0
    assert (workdir / "var" / "quart-framework.db").exists()  # --migrate created the schema
    assert '"message"' in server.log()  # LOG_FORMAT=json
    # Nothing but the data folder (and this test's server log) is written to the working folder.
    assert {name for name in os.listdir(workdir) if not name.startswith("server-")} == {"var"}
