"""Start the real service (`python -m app serve`, the Dockerfile's command) on a free loopback
port, wait until it answers, and stop it with SIGTERM as a container runtime would. The
command runs in a process forked with its third-party imports done (tests/e2e/launcher.py)."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
import psutil

from tests.e2e.launcher import ServerProcess, launch
from tests.waiting import poll

PROJECT_ROOT = Path(__file__).resolve().parents[2]


def _graceful_timeout() -> float:
    from hypercorn.config import Config

    from app.cli import HYPERCORN_CONFIG

    return float(Config.from_toml(HYPERCORN_CONFIG).graceful_timeout)


# hypercorn.toml's graceful_timeout (8 s); a worker still running BACKSTOP_MARGIN_SECONDS after
# it is ended by its backstop (app.supervisor.ShutdownBackstop).
GRACEFUL_TIMEOUT = _graceful_timeout()


def assert_stopped_without_waiting_out_the_graceful_timeout(
    log: str, exited_within: float, workers: int
) -> None:
    """A SIGTERM'd service stopped at once: every worker drained, none was still held halfway
    through graceful_timeout (`_report_lingering` would have logged "shutdown still waiting"),
    and the processes were gone before the backstop's deadline. The wall time to exit is not
    held to graceful_timeout itself: on a loaded machine process scheduling adds seconds
    around the shutdown (8.56 s seen at a load average of 15, with drains of 1.6 and 2.1 s)."""
    from app.supervisor import BACKSTOP_MARGIN_SECONDS

    assert log.count("worker shutting down: drained") == workers, log[-3000:]
    assert "shutdown still waiting" not in log, log[-3000:]
    assert exited_within < GRACEFUL_TIMEOUT + BACKSTOP_MARGIN_SECONDS, exited_within


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@dataclass
class RunningServer:
    process: ServerProcess | subprocess.Popen
    base_url: str
    log_path: Path

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self, timeout: float = 15) -> int:
        """SIGTERM, then wait; returns the exit code (kills and fails after `timeout` s)."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
                raise AssertionError(
                    f"server ignored SIGTERM for {timeout}s:\n{self.log()}"
                ) from None
        return self.process.returncode


def workers_of(supervisor_pid: int) -> list[psutil.Process]:
    """The worker processes of the supervisor `supervisor_pid`: its children, less
    multiprocessing's resource tracker, which a supervisor that spawns its workers also starts
    (where a fork would be unsafe: app.supervisor.worker_context)."""
    return [
        child
        for child in psutil.Process(supervisor_pid).children()
        if "resource_tracker" not in " ".join(child.cmdline())
    ]


@contextmanager
def run_server(
    tmp_path: Path,
    env: dict[str, str],
    *,
    workers: int = 1,
    ready_path: str = "/api/v1/tag",
    # 2 workers start in 2-3 s idle; with three suites at once on 2 cores some printed nothing
    # in 60 s (imports alone take 20 s and more at a load average of 15).
    startup_timeout: float = 120,
    command: list[str] | None = None,
    port: int | None = None,
) -> Iterator[RunningServer]:
    """Run `command` (default `python -m app serve`) in `tmp_path` with N workers, `env` added to
    a minimal environment, and BIND set to `port` (default: a free loopback port)."""
    chosen_port = port

    def start() -> RunningServer:
        bound = chosen_port or free_port()
        log_path = tmp_path / f"server-{bound}.log"
        full_env = {
            "PATH": os.environ.get("PATH", ""),
            "HOME": os.environ.get("HOME", str(tmp_path)),
            "PYTHONUNBUFFERED": "1",
            "BIND": f"127.0.0.1:{bound}",
            "WEB_CONCURRENCY": str(workers),
            **env,
        }
        # The service must not depend on being started from the project: `tmp_path` is its
        # working directory.
        if command is None:  # `python -m app serve`, forked with its imports done
            log_path.write_bytes(b"")
            started: ServerProcess | subprocess.Popen = launch(
                ["serve"], tmp_path, full_env, log_path
            )
        else:
            with log_path.open("wb") as log_file:
                started = subprocess.Popen(
                    command, cwd=tmp_path, env=full_env, stdout=log_file, stderr=subprocess.STDOUT
                )
        return RunningServer(started, f"http://127.0.0.1:{bound}", log_path)

    server = start()
    process = server.process
    port_retries = 0 if chosen_port else 3  # another test may take a free port before the bind
    try:
        deadline = time.monotonic() + startup_timeout
        while True:
            if process.poll() is not None:
                if port_retries and "Address already in use" in server.log():
                    port_retries -= 1
                    server = start()
                    process = server.process
                    continue
                raise AssertionError(f"server exited with {process.returncode}:\n{server.log()}")
            try:
                if httpx.get(server.base_url + ready_path, timeout=1).status_code < 500:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise AssertionError(f"server not ready in {startup_timeout}s:\n{server.log()}")
            time.sleep(0.1)
        # One worker answering is not all of them: a test that breaks a dependency next must
        # not catch another worker still starting (each says "Running on" once it serves).
        if command is None:

            def every_worker_serves() -> bool:
                assert process.poll() is None, f"server exited:\n{server.log()}"
                return server.log().count("Running on") >= workers

            poll(every_worker_serves, max(deadline - time.monotonic(), 1))
        yield server
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)  # workers left behind by a failed test


def run_cli(cwd: Path, env: dict[str, str], *commands: list[str]) -> None:
    """Run `python -m app <command>` for each command (e.g. ["init-db"]), as a deployment does:
    with only `env` for an environment and `cwd` as the working directory.

    In this process, through the same click group: a Python process of its own costs about
    1 s of CPU to import the app, and the suite prepares about 60 deployments on 2 cores.
    tests/test_migrations.py, tests/e2e/test_lifecycle.py and test_misconfiguration.py run
    `python -m app` commands as processes."""
    from concurrent.futures import ThreadPoolExecutor

    from click.testing import CliRunner, Result

    from app.cli import main

    def invoke(command: list[str]) -> Result:
        saved_environment, saved_directory = dict(os.environ), os.getcwd()
        os.environ.clear()
        os.environ.update({**env, "PATH": ""})
        os.chdir(cwd)
        try:
            return CliRunner().invoke(main, command, prog_name="python -m app")
        finally:
            os.chdir(saved_directory)
            os.environ.clear()
            os.environ.update(saved_environment)

    # On a thread of their own: the commands call asyncio.run, and the caller may be inside a
    # running event loop (an async test, Playwright's sync API). This thread waits for them.
    with ThreadPoolExecutor(1) as executor:
        for command in commands:
            finished = executor.submit(invoke, command).result()
            assert finished.exit_code == 0, (
                f"python -m app {command[0]} exited {finished.exit_code}:\n"
                f"{finished.output[-3000:]}"
                + (f"\n{finished.exc_info[1]!r}" if finished.exc_info else "")
            )


def prepare_deployment(
    setup_dir: Path, database: str, admin: tuple[str, str], **settings: str
) -> dict[str, str]:
    """A production-like environment for real servers: a fresh MySQL database `database` on the
    test server, the tests' Redis emptied when `REDIS_URL` is among `settings`, migrations
    applied and an admin created, as a deployment does. Returns the environment."""
    import asyncio

    from tests.conftest import TEST_SECRET_KEY, _recreate_mysql_database
    from tests.resources import mysql_database_url

    url = mysql_database_url(database)
    asyncio.run(_recreate_mysql_database(url))
    if "REDIS_URL" in settings:
        from redis import Redis

        client = Redis.from_url(settings["REDIS_URL"])
        client.flushdb()
        client.close()
    env = {"APP_ENV": "production", "SECRET_KEY": TEST_SECRET_KEY, "DATABASE_URL": url, **settings}
    run_cli(
        setup_dir, env, ["init-db"], ["create-admin", "--name", admin[0], "--password", admin[1]]
    )
    return env


def add_tick_job(base_url: str, auth: tuple[str, str], job_id: str = "tick") -> None:
    """Add an interval job of 1 s (the built-in `print_test`) through the scheduler's API."""
    created = httpx.post(
        f"{base_url}/scheduler/jobs",
        auth=auth,
        timeout=10,
        json={
            "id": job_id,
            "func": "app.scheduler.jobs:print_test",
            "trigger": "interval",
            "seconds": 1,
        },
    )
    assert created.status_code == 200, created.text


def assert_presence_and_credential_limit(base_url: str, admin: tuple[str, str]) -> None:
    """On a service with `AUTH_RATE_LIMIT=5/minute`: a new user who makes a request is online,
    and the sixth wrong password for them is refused with 429 (both kept in Redis)."""
    import secrets

    name, password = f"n{secrets.token_hex(4)}", "newcomer-password"
    made = httpx.post(
        f"{base_url}/api/v1/user",
        auth=admin,
        json={"name": name, "password": password, "role": 0},
        timeout=10,
    )
    assert made.status_code == 200, made.text
    user_id = made.json()["data"]["id"]
    assert httpx.get(f"{base_url}/api/v1/tag", auth=(name, password), timeout=10).is_success
    online = httpx.get(f"{base_url}/api/v1/online", auth=admin, timeout=10).json()["data"]
    assert user_id in {entry["id"] for entry in online["users"]}, online
    statuses = [
        httpx.post(
            f"{base_url}/login", json={"name": name, "password": "wrong"}, timeout=10
        ).status_code
        for _ in range(6)
    ]
    assert statuses == [401] * 5 + [429], statuses
