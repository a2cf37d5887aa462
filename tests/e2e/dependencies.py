"""Throwaway `redis-server` and `mariadbd` processes for fault tests.

Each runs from a data directory under the test's temporary folder, on a free loopback port,
and is the only server a fault test stops, hangs (SIGSTOP/SIGCONT), kills or restarts: the
shared servers on 3306 and 6379 are never touched.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from tests.e2e.server import free_port

START_TIMEOUT = 30.0


def _wait_until(ready, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not ready():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} did not start in {timeout} s")
        time.sleep(0.05)


@dataclass
class OwnServer:
    """A server process this test owns. `start()` (again) after `kill()` restarts it on the
    same port and data directory."""

    name: str
    command: list[str]
    port: int
    ready_command: list[str]
    process: subprocess.Popen | None = None
    log_path: Path | None = None
    history: list[str] = field(default_factory=list)

    def start(self) -> None:
        assert self.log_path is not None
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                self.command, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
            )
        _wait_until(self._answers, START_TIMEOUT, self.name)
        self.history.append("started")

    def _answers(self) -> bool:
        if self.process is not None and self.process.poll() is not None:
            raise AssertionError(f"{self.name} exited: {self.log_path.read_text()[-2000:]}")
        return subprocess.run(self.ready_command, capture_output=True).returncode == 0

    def hang(self) -> None:
        """SIGSTOP: the process keeps its sockets open and answers nothing."""
        os.kill(self.process.pid, signal.SIGSTOP)
        self.history.append("hung")

    def resume(self) -> None:
        os.kill(self.process.pid, signal.SIGCONT)
        self.history.append("resumed")

    def kill(self) -> None:
        """SIGKILL, as a crash or an OOM kill would."""
        with contextlib.suppress(ProcessLookupError):
            os.kill(self.process.pid, signal.SIGCONT)
            os.kill(self.process.pid, signal.SIGKILL)
        self.process.wait(10)
        self.history.append("killed")

    def sql(self, statement: str) -> str:
        """Run `statement` with the mysql client (a mariadbd of this test); its tab-separated
        output without headers."""
        return subprocess.run(
            [
                "mysql",
                "--protocol=tcp",
                "-h127.0.0.1",
                f"-P{self.port}",
                "-uroot",
                "-N",
                "-B",
                "-e",
                statement,
            ],
            check=True,
            capture_output=True,
            text=True,
        ).stdout

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.kill()


@contextmanager
def own_redis(tmp_path: Path) -> Iterator[OwnServer]:
    """A redis-server of this test, no persistence, on a free port."""
    port = free_port()
    data = tmp_path / f"redis-{port}"
    data.mkdir()
    server = OwnServer(
        name="redis-server",
        command=[
            "redis-server",
            "--port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            str(data),
            "--daemonize",
            "no",
        ],
        port=port,
        ready_command=["redis-cli", "-p", str(port), "ping"],
        log_path=data / "redis.log",
    )
    server.start()
    try:
        yield server
    finally:
        server.stop()


@contextmanager
def own_mariadb(tmp_path: Path) -> Iterator[OwnServer]:
    """A mariadbd of this test: a fresh data directory (root, empty password), a free port."""
    port = free_port()
    base = tmp_path / f"mariadb-{port}"
    base.mkdir()
    subprocess.run(
        [
            "mariadb-install-db",
            "--no-defaults",
            f"--datadir={base / 'data'}",
            "--user=root",
            "--auth-root-authentication-method=normal",
            "--skip-test-db",
        ],
        check=True,
        capture_output=True,
    )
    server = OwnServer(
        name="mariadbd",
        command=[
            "/usr/sbin/mariadbd",
            "--no-defaults",
            f"--datadir={base / 'data'}",
            f"--port={port}",
            "--bind-address=127.0.0.1",
            f"--socket={base / 'sock'}",
            f"--pid-file={base / 'pid'}",
            "--user=root",
            "--skip-log-bin",
            "--innodb-buffer-pool-size=32M",
            "--skip-name-resolve",
            f"--log-error={base / 'error.log'}",
        ],
        port=port,
        ready_command=[
            "mysqladmin",
            "--protocol=tcp",
            "-h127.0.0.1",
            f"-P{port}",
            "-uroot",
            "ping",
        ],
        log_path=base / "stdout.log",
    )
    server.start()
    try:
        yield server
    finally:
        server.stop()
        shutil.rmtree(base, ignore_errors=True)
