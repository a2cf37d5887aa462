"""Shared pieces of the benchmarks: start the service or the baseline server on loopback."""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import psutil

ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def wait_for_port(port: int, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.5):
            return
        time.sleep(0.1)
    raise RuntimeError(f"nothing listens on {port}")


@contextlib.contextmanager
def service(
    workers: int = 1, redis_url: str | None = None, **env: str
) -> Iterator[tuple[int, psutil.Process]]:
    """`python -m app serve` (embedded SQLite) on a free port; yields (port, process)."""
    port = free_port()
    workdir = Path(tempfile.mkdtemp(prefix="qf-bench-"))
    full_env = {
        **os.environ,
        "APP_ENV": "development",
        "BIND": f"127.0.0.1:{port}",
        "WEB_CONCURRENCY": str(workers),
        "LOG_LEVEL": "WARNING",
        "WS_RATE_LIMIT": "100000/second",
        "WS_IDLE_TIMEOUT": "600",
        **env,
    }
    if redis_url:
        full_env["REDIS_URL"] = redis_url
    subprocess.run(
        [sys.executable, "-m", "app", "init-db"],
        cwd=workdir,
        env=full_env,
        check=True,
        capture_output=True,
    )
    process = subprocess.Popen(
        [sys.executable, "-m", "app", "serve"],
        cwd=workdir,
        env=full_env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_for_port(port)
        time.sleep(1.0)  # let every worker finish starting
        yield port, psutil.Process(process.pid)
    finally:
        process.terminate()
        process.wait(30)


@contextlib.contextmanager
def baseline_server(*, deflate: bool = False) -> Iterator[tuple[int, psutil.Process]]:
    """A bare `websockets` server relaying every frame to every client: the floor of cost
    (without compression unless `deflate`)."""
    port = free_port()
    command = [sys.executable, str(ROOT / "bench" / "baseline_server.py"), str(port)]
    process = subprocess.Popen([*command, "--deflate"] if deflate else command)
    try:
        wait_for_port(port)
        yield port, psutil.Process(process.pid)
    finally:
        process.terminate()
        process.wait(30)


def tree_rss(process: psutil.Process) -> int:
    """Resident memory of a process and its children, in bytes."""
    total = process.memory_info().rss
    for child in process.children(recursive=True):
        with contextlib.suppress(psutil.Error):
            total += child.memory_info().rss
    return total
