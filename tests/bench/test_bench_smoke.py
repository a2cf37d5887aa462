"""A tiny run of `python -m bench` (every suite, a few connections, one round), so the
benchmarks keep working: each row has a measured value, and the servers it started are gone."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import psutil
import pytest

from tests.resources import RUN_ID, mysql_database_url

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.e2e


@pytest.mark.long(110)
def test_the_benchmark_runs_every_suite_and_prints_its_table(
    redis_url: str, tmp_path: Path
) -> None:
    rows_file = tmp_path / "rows.json"
    command = [
        sys.executable,
        "-m",
        "bench",
        "--smoke",
        "--mysql-url",
        mysql_database_url("bench"),
        "--redis-url",
        redis_url,
        "--json",
        str(rows_file),
    ]
    with subprocess.Popen(
        command, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    ) as bench:
        try:
            # A guard against a hang; a loaded CI machine takes several times longer.
            stdout, stderr = bench.communicate(timeout=1800)  # 915 s at a load of 15
        except subprocess.TimeoutExpired:
            # SIGTERM, not the SIGKILL of `run(timeout=)`: the bench then stops the servers it
            # started (a killed bench left them running, bound to their ports).
            bench.terminate()
            bench.communicate(timeout=60)
            raise
    completed = subprocess.CompletedProcess(command, bench.returncode, stdout, stderr)
    assert completed.returncode == 0, completed.stderr[-3000:]
    table = completed.stdout
    for workload in (
        "GET user by id",
        "GET /healthz",
        "GET user by id, Bearer",
        "GET blog list (500 rows)",
        "POST user (Bearer)",
        "GET blog, If-None-Match current (304): CPU per answer",
        "loop lag p99",
        "fan-out 1 -> 5",
        "server CPU per delivery",
        "burst of 10",
        "10 joins to one room",
        "idle websocket (20 open, joined)",
        "idle /websocket (20 open, 1 worker)",
        "raw ASGI relay on Hypercorn",
        "GET user, 4 connections + 4 slow uploads",
        "c4 GET user: this service on Hypercorn (default)",
        "c4 GET user: this service on Uvicorn (serve --server)",
        "c4 GET user: FastAPI on Uvicorn, access log on",
        "fan-out 1 -> 5 at 50 msg/s, 2 workers: CPU per delivery",
        "idle websocket (20 open, 2 workers)",
        "the service's own hooks, together",
        "hook: access log",
        "access log line: the service's writer, text",
        "access log line: stdlib logging, JSON lines",
        "access log line: structlog, JSON lines",
        "GET user, tracing on (10% sampled)",
        "fan-out 1 -> 5 CPU per delivery, tracing on (10% sampled)",
        "fan-out 1 -> 5 at 50 msg/s, Redis Cluster, p50",
    ):
        assert workload in table, table
    rows = json.loads(rows_file.read_text())
    for row in rows:
        assert not math.isnan(row["value"]), row
    rates = [row for row in rows if row["unit"] == "req/s"]
    assert rates and all(row["value"] > 0 for row in rates), rates
    assert all(row["reference"] > 0 for row in rates if row["reference_name"] != "Flask original")
    joins = next(row for row in rows if row["workload"] == "10 joins to one room")
    assert joins["value"] < 30
    # One slow-upload round: the service kept serving beside the slow sockets and let each go
    # (408, or closed) within HTTP_BODY_TIMEOUT (1 s in the smoke run) + 1 s.
    slow = next(row for row in rows if row["workload"].endswith("longest a slow socket was held"))
    assert slow["met"], slow
    beside = next(
        row for row in rows if row["workload"] == "GET user, 4 connections + 4 slow uploads"
    )
    assert beside["value"] > 0, beside
    # Nothing it started is left running (its servers inherit this run's id).
    assert _processes_of_this_run() == []


def _processes_of_this_run() -> list[list[str]]:
    """The bench processes and servers of this test run still alive (not the fork server that
    tests/e2e/launcher.py keeps for this pytest process: its command line names its modules)."""
    found = []
    for process in psutil.process_iter(["cmdline", "pid"]):
        if process.info["pid"] == os.getpid():
            continue
        cmdline = process.info["cmdline"] or []
        if any("multiprocessing.forkserver" in part for part in cmdline):
            continue
        try:
            if process.environ().get("QF_TEST_RUN_ID") == RUN_ID and any(
                "bench" in part or part == "serve" for part in cmdline
            ):
                found.append(process.info["cmdline"])
        except psutil.Error:
            continue
    return found
