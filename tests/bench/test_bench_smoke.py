"""Tiny runs of `python -m bench` (every suite, a few connections, one round), so the
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


# The suites in three groups of about the same length, each run by a bench of its own so the
# test workers share them (one bench of every suite took 140 s, most of it waiting on loads).
# Each suite's rows that must be in its table.
GROUPS = {
    "rest,conditional,fanout": (
        "GET user by id",
        "GET /healthz",
        "GET user by id, Bearer",
        "GET blog list (500 rows)",
        "POST user (Bearer)",
        "loop lag p99",
        "GET blog, If-None-Match current (304): CPU per answer",
        "fan-out 1 -> 5",
        "server CPU per delivery",
        "burst of 10",
        "raw ASGI relay on Hypercorn",
    ),
    "peers,cluster,joins": (
        "c4 GET user: this service on Hypercorn (default)",
        "c4 GET user: this service on Uvicorn (serve --server)",
        "c4 GET user: FastAPI on Uvicorn, access log on",
        "fan-out 1 -> 5 at 50 msg/s, 2 workers: CPU per delivery",
        "idle websocket (20 open, 2 workers)",
        "the service's own hooks, together",
        "hook: access log",
        "fan-out 1 -> 5 at 50 msg/s, Redis Cluster, p50",
        "10 joins to one room",
    ),
    "concurrency,tracing,idle": (
        "GET user, 4 connections + 4 slow uploads",
        "GET user, tracing on (10% sampled)",
        "fan-out 1 -> 5 CPU per delivery, tracing on (10% sampled)",
        "idle websocket (20 open, joined)",
        "idle /websocket (20 open, 1 worker)",
    ),
}


@pytest.mark.parametrize("suites", list(GROUPS))
def test_the_benchmark_runs_every_suite_and_prints_its_table(
    redis_url: str, tmp_path: Path, suites: str
) -> None:
    rows_file = tmp_path / "rows.json"
    command = [
        sys.executable,
        "-m",
        "bench",
        "--smoke",
        "--only",
        suites,
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
    for workload in GROUPS[suites]:
        assert workload in table, table
    rows = json.loads(rows_file.read_text())
    for row in rows:
        assert not math.isnan(row["value"]), row
    rates = [row for row in rows if row["unit"] == "req/s"]
    assert all(row["value"] > 0 for row in rates), rates
    assert all(row["reference"] > 0 for row in rates if row["reference_name"] != "Flask original")
    if "rest" in suites:
        assert rates, rows
    if "joins" in suites:
        joins = next(row for row in rows if row["workload"] == "10 joins to one room")
        assert joins["value"] < 30
    if "concurrency" in suites:
        # One slow-upload round: the service kept serving beside the slow sockets and let each
        # go (408, or closed) within HTTP_BODY_TIMEOUT (1 s in the smoke run) + 1 s.
        slow = next(
            row for row in rows if row["workload"].endswith("longest a slow socket was held")
        )
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
