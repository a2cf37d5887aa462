"""The servers the benchmarks compare, each started on a free loopback port in its own
process (the load comes from this one): the service, and its baselines in bench/apps/."""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import psutil

from bench.databases import create_database, drop_database

ROOT = Path(__file__).resolve().parent.parent
BENCH_SECRET_KEY = "bench-secret-key-" + "x" * 32
ADMIN_NAME = "benchadmin"
ADMIN_PASSWORD = "bench-password"


@dataclass
class Server:
    name: str
    port: int
    process: psutil.Process
    workdir: Path

    @property
    def http(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def ws(self) -> str:
        return f"ws://127.0.0.1:{self.port}"

    def cpu_seconds(self) -> float:
        """User + system CPU time of the server and all its worker processes, in seconds."""
        total = 0.0
        for process in [self.process, *self.process.children(recursive=True)]:
            with contextlib.suppress(psutil.Error):
                times = process.cpu_times()
                total += times.user + times.system
        return total

    def rss(self) -> int:
        """Resident memory of the server and its workers, in bytes."""
        total = 0
        for process in [self.process, *self.process.children(recursive=True)]:
            with contextlib.suppress(psutil.Error):
                total += process.memory_info().rss
        return total


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def wait_for_port(port: int, process: subprocess.Popen[bytes], timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"the server exited with {process.returncode} before listening")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.5):
            return
        time.sleep(0.05)
    raise RuntimeError(f"nothing listens on {port} after {timeout} s")


@contextlib.contextmanager
def _run(
    name: str,
    command: list[str],
    port: int,
    *,
    env: dict[str, str] | None = None,
    workdir: Path | None = None,
    ready_workers: int = 0,
) -> Iterator[Server]:
    workdir = workdir or Path(tempfile.mkdtemp(prefix="qf-bench-"))
    log = (workdir / "server.log").open("ab")
    process = subprocess.Popen(
        command, cwd=workdir, env={**os.environ, **(env or {})}, stdout=log, stderr=log
    )
    try:
        wait_for_port(port, process)
        server = Server(name, port, psutil.Process(process.pid), workdir)
        deadline = time.monotonic() + 30
        while len(server.process.children(recursive=True)) < ready_workers:
            if time.monotonic() > deadline:
                raise RuntimeError(f"{name}: {ready_workers} workers did not start")
            time.sleep(0.05)
        yield server
    finally:
        process.terminate()
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        log.close()


def service_env(
    port: int, database_url: str, redis_url: str | None, workers: int
) -> dict[str, str]:
    env = {
        "APP_ENV": "production",
        "SECRET_KEY": BENCH_SECRET_KEY,
        "DATABASE_URL": database_url,
        "BIND": f"127.0.0.1:{port}",
        "WEB_CONCURRENCY": str(workers),
        # The fan-out's sender offers far more than a person types, and the burst arrives at
        # once: the per-connection frame rate limit would refuse it.
        "WS_RATE_LIMIT": "100000/second",
        "WS_IDLE_TIMEOUT": "600",
    }
    if redis_url:
        env["REDIS_URL"] = redis_url
    return env


def prepare_service(database_url: str, redis_url: str | None) -> Path:
    """Migrate the service's database and create the bench admin; returns the work folder."""
    drop_database(database_url)
    create_database(database_url)
    workdir = Path(tempfile.mkdtemp(prefix="qf-bench-"))
    env = {**os.environ, **service_env(0, database_url, redis_url, 1)}
    for command in (
        ["init-db"],
        ["create-admin", "--name", ADMIN_NAME, "--password", ADMIN_PASSWORD],
    ):
        subprocess.run(
            [sys.executable, "-m", "app", *command],
            cwd=workdir,
            env=env,
            check=True,
            capture_output=True,
        )
    return workdir


@contextlib.contextmanager
def service(
    database_url: str, redis_url: str | None, *, workers: int = 2, **extra_env: str
) -> Iterator[Server]:
    """`python -m app serve` with `workers` workers (migrated by `prepare_service`)."""
    port = free_port()
    env = {**service_env(port, database_url, redis_url, workers), **extra_env}
    with _run(
        f"service ({workers} workers)",
        [sys.executable, "-m", "app", "serve"],
        port,
        env=env,
        ready_workers=workers,
    ) as server:
        yield server


@contextlib.contextmanager
def flask_original(database_url: str) -> Iterator[Server]:
    """The Flask baseline under gunicorn, 2 workers x 8 threads (bench/apps/flask_original.py)."""
    port = free_port()
    command = [
        sys.executable,
        "-m",
        "gunicorn",
        "--workers",
        "2",
        "--threads",
        "8",
        "--bind",
        f"127.0.0.1:{port}",
        "--chdir",
        str(ROOT),
        "bench.apps.flask_original:create_app()",
    ]
    with _run(
        "Flask original",
        command,
        port,
        env={"FLASK_DATABASE_URL": database_url},
        ready_workers=2,
    ) as server:
        yield server


@contextlib.contextmanager
def hypercorn_app(
    name: str, module: str, *, workers: int = 2, **extra_env: str
) -> Iterator[Server]:
    """An ASGI app of bench/apps/ on the service's Hypercorn settings (hypercorn.toml)."""
    port = free_port()
    command = [
        sys.executable,
        "-m",
        "hypercorn",
        "--config",
        str(ROOT / "hypercorn.toml"),
        "--workers",
        str(workers),
        "--bind",
        f"127.0.0.1:{port}",
        module,
    ]
    env = {"PYTHONPATH": str(ROOT), **extra_env}
    with _run(name, command, port, env=env, ready_workers=workers) as server:
        yield server


@contextlib.contextmanager
def websockets_relay() -> Iterator[Server]:
    """A bare `websockets` broadcast server without compression (bench/apps/websockets_relay.py)."""
    port = free_port()
    command = [sys.executable, str(ROOT / "bench" / "apps" / "websockets_relay.py"), str(port)]
    with _run("bare websockets", command, port) as server:
        yield server


@contextlib.contextmanager
def gevent_relay() -> Iterator[Server]:
    """The gevent-websocket chat recipe (bench/apps/gevent_relay.py)."""
    port = free_port()
    command = [sys.executable, "-m", "bench.apps.gevent_relay", str(port)]
    with _run("gevent-websocket", command, port, env={"PYTHONPATH": str(ROOT)}) as server:
        yield server
