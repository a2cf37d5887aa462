"""Where the workers' metric values live: prometheus-client's multi-process mode, one folder of
memory-mapped files (`PROMETHEUS_MULTIPROC_DIR`) that the supervisor empties before the
workers start and that the worker answering a scrape reads whole (app/metrics.py).

Apart from app/metrics.py because the supervisor needs these and must not import that one:
it forks the workers (app/supervisor.py), and a metric made in the supervisor before the
folder was set would be a value of that process's memory, inherited by every worker.
"""

from __future__ import annotations

import os
from pathlib import Path

from prometheus_client import multiprocess

MULTIPROCESS_DIRECTORY = "PROMETHEUS_MULTIPROC_DIR"

_pid = os.getpid()


def _renew_pid() -> None:
    global _pid
    _pid = os.getpid()


def process_identifier() -> int:
    """This process's pid, without a system call (renewed in a forked child)."""
    return _pid


os.register_at_fork(after_in_child=_renew_pid)


def prepare_multiprocess_directory(path: Path) -> None:
    """Empty `path` and point prometheus-client's multi-process mode at it; call it in the
    supervisor before any worker starts (workers inherit the environment)."""
    path.mkdir(parents=True, exist_ok=True)
    for stale in path.glob("*.db"):
        stale.unlink()
    os.environ[MULTIPROCESS_DIRECTORY] = str(path)


def worker_exited(pid: int) -> None:
    """Drop a dead worker's live gauges (open websockets, pool use, leadership)."""
    if os.environ.get(MULTIPROCESS_DIRECTORY):
        multiprocess.mark_process_dead(pid)
