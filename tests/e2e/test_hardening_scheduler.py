"""The second attack run, replayed against a production-mode service: scheduler jobs that would
hang every worker (intervals out of bounds, unsafe ids, rule-breaking jobs found in the store),
the scheduler API fuzzed over its triggers' ranges, and a leader stalled past its lease."""

from __future__ import annotations

import re
import time
from datetime import UTC, datetime

import httpx
import pytest

from tests.conftest import REDIS_URL
from tests.e2e.hardening import ADMIN, PRINT_TEST, add_job, lag_buckets, loop_lag_p99
from tests.e2e.server import run_server
from tests.waiting import poll

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def server(hardening_server):
    return hardening_server


@pytest.fixture(scope="module")
def env(hardening_env):
    return hardening_env


# 1-3: scheduler definitions ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("definition", "field"),
    [
        ({"seconds": 0.000001}, "seconds: 1e-06 s is shorter than SCHEDULER_MIN_INTERVAL_SECONDS"),
        ({"seconds": 1e300}, "seconds: must be at most 315360000"),
        ({"minutes": 0.001}, "minutes: 0.06 s is shorter than"),
        ({"weeks": 10**9}, "weeks: must be at most 521"),
    ],
)
def test_an_interval_out_of_bounds_is_400_naming_the_field(server, definition, field) -> None:
    response = add_job(
        server, id="tiny", func=PRINT_TEST, args=["t"], trigger="interval", **definition
    )
    assert response.status_code == 400, response.text
    assert field in response.json()["error_message"]
    assert httpx.get(f"{server.base_url}/healthz", timeout=2).status_code == 200
    jobs = httpx.get(f"{server.base_url}/scheduler/jobs", auth=ADMIN, timeout=5).json()
    assert "tiny" not in [job["id"] for job in jobs]


def test_a_job_id_must_be_a_safe_path_segment(server) -> None:
    response = add_job(server, id="../../x\n", func=PRINT_TEST, trigger="interval", seconds=60)
    assert response.status_code == 400
    assert response.json()["error_message"].startswith("id: must be 1 to 64 letters")


# Stored jobs that break the rules (written by an older version, or by hand) ---------------


def store_job_directly(job_id: str, seconds: float, prefix: str) -> None:
    """Write a job into the Redis job store (keys under `prefix`) as an older version (or a
    hand) could."""
    from apscheduler.job import Job
    from apscheduler.jobstores.redis import RedisJobStore
    from apscheduler.schedulers.background import BackgroundScheduler
    from apscheduler.triggers.interval import IntervalTrigger
    from redis.connection import parse_url

    store = RedisJobStore(
        jobs_key=f"{prefix}scheduler:jobs",
        run_times_key=f"{prefix}scheduler:run_times",
        **parse_url(REDIS_URL),
    )
    trigger = IntervalTrigger(seconds=seconds, timezone="UTC")
    job = Job(
        BackgroundScheduler(timezone="UTC"),
        id=job_id,
        func=PRINT_TEST,
        args=("t",),
        kwargs={},
        trigger=trigger,
        executor="default",
        name=job_id,
        misfire_grace_time=30,
        coalesce=True,
        max_instances=1,
        next_run_time=datetime.now(UTC),
    )
    store.add_job(job)
    store.redis.close()


def test_stored_jobs_that_break_the_rules_are_refused_at_load_and_never_run(env, tmp_path) -> None:
    """The 1 µs job that hung every worker, and a job whose id cannot be a path segment, are
    already in Redis when the service starts: both are refused (paused, listed with the
    reason), the workers stay responsive, the bad id can still be deleted, and SIGTERM stops
    the service within its graceful timeout."""
    # A key prefix of its own: the module's server shares the Redis database.
    prefix = f"stored-{tmp_path.name}:"
    store_job_directly("tiny", 0.000001, prefix)
    store_job_directly("../../x\n", 60, prefix)
    with run_server(tmp_path, {**env, "REDIS_KEY_PREFIX": prefix}, workers=2) as server:
        for _ in range(20):
            started = time.monotonic()
            assert httpx.get(f"{server.base_url}/healthz", timeout=2).status_code == 200
            assert time.monotonic() - started < 1
        jobs = {
            job["id"]: job
            for job in httpx.get(f"{server.base_url}/scheduler/jobs", auth=ADMIN, timeout=5).json()
        }
        assert "shorter than SCHEDULER_MIN_INTERVAL_SECONDS" in jobs["tiny"]["refused"]
        assert jobs["tiny"]["next_run_time"] is None  # paused
        assert jobs["../../x\n"]["refused"].startswith("id: ")
        runs = httpx.get(f"{server.base_url}/scheduler/jobs/tiny/runs", auth=ADMIN, timeout=5)
        assert runs.json() == []
        resumed = httpx.post(f"{server.base_url}/scheduler/jobs/tiny/resume", auth=ADMIN, timeout=5)
        assert resumed.status_code == 400 and "PATCH its trigger" in resumed.text
        deleted = httpx.delete(
            f"{server.base_url}/scheduler/jobs/..%2F..%2Fx%0A", auth=ADMIN, timeout=5
        )
        assert deleted.status_code == 204
        fixed = httpx.patch(
            f"{server.base_url}/scheduler/jobs/tiny",
            json={"trigger": "interval", "seconds": 3600},
            auth=ADMIN,
            timeout=5,
        )
        assert fixed.status_code == 200 and "refused" not in fixed.json()
        started = time.monotonic()
        assert server.stop() == 0
        assert time.monotonic() - started < 8 + 1  # graceful_timeout (hypercorn.toml) + 1 s
        assert "job 'tiny' refused, and paused" in server.log()


# The scheduler API fuzzed over the trigger fields' full ranges ---------------------------


@pytest.mark.long(45)
def test_fuzzing_the_scheduler_api_gives_no_5xx_and_keeps_the_loop_responsive(
    server, tmp_path
) -> None:
    """Schemathesis on every /scheduler operation, boundary values of each trigger field
    included (its coverage phase), at least 2,000 cases: no 5xx, and the event loop's own lag
    p99 under 100 ms on both workers meanwhile (the leader schedules what the fuzzer adds).
    Half the cases of the operations on one job name a job that exists (a Schemathesis
    dictionary in schemathesis.toml): with random ids alone they all ended in 404 ("Missing
    test data") and never reached the code behind it."""
    import subprocess
    import sys
    from pathlib import Path

    existing = [f"fuzz-target-{number}" for number in range(8)]
    for job_id in existing:
        added = add_job(server, id=job_id, func=PRINT_TEST, args=["t"], trigger="interval", hours=1)
        assert added.status_code == 200, added.text
    (tmp_path / "schemathesis.toml").write_text(
        f"[dictionaries.jobs]\nvalues = {existing!r}\n\n"
        '[parameters]\n"path.job_id" = { dictionary = "jobs", probability = 0.5 }\n'
    )
    token = httpx.post(f"{server.base_url}/api/v1/tokens", auth=ADMIN, timeout=10).json()["data"][
        "token"
    ]
    own = "event_loop_own_lag_seconds"
    before, own_before = lag_buckets(server), lag_buckets(server, own)
    result = subprocess.run(
        [
            Path(sys.executable).parent / "schemathesis", "run", f"{server.base_url}/openapi.json",
            "--include-path-regex", "^/scheduler", "--checks", "not_a_server_error",
            "--max-examples", "150", "--seed", "20261129", "--workers", "2", "--no-color",
            "-H", f"Authorization: Bearer {token}",
        ],
        cwd=tmp_path, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-5000:]
    found = re.search(r"(\d+) generated, (\d+) passed", output)
    assert found, output[-3000:]
    generated = int(found[1])
    lag, own_lag = loop_lag_p99(server, before), loop_lag_p99(server, own_before, own)
    print(
        f"scheduler fuzz: {generated} cases, lag p99 {lag * 1000:g} ms, own {own_lag * 1000:g} ms"
    )
    assert generated >= 2000, output[-3000:]
    assert "Missing test data" not in output, output[-3000:]  # the jobs' own operations ran
    # The loop's own lag: what the fuzz's scheduling held the loop. The whole lag also counts
    # the CPU this worker waited for while the other tests of the suite ran (250 ms seen).
    assert own_lag <= 0.1, (lag, own_lag)
    assert " 500 " not in server.log()


# A leader whose loop stalls past its lease ------------------------------------------------


def test_a_leader_stalled_past_its_lease_runs_nothing_until_it_leads_again(env, tmp_path) -> None:
    """SIGSTOP the leading worker for longer than its lease: the other takes over; when the
    first resumes, it finds its lease lapsed and runs nothing. At no scrape do two workers
    hold a valid lease (`scheduler_lease_expiry_seconds` above the scrape's time: a stopped
    worker cannot lower its own `scheduler_leader`), and the run history has each tick once."""
    import os
    import signal

    settings = {
        **env,
        "REDIS_KEY_PREFIX": f"stalled-{tmp_path.name}:",  # the module's server leads the other
        "SCHEDULER_LEASE_SECONDS": "2",
        "SCHEDULER_HISTORY": "500",
    }
    with run_server(tmp_path, settings, workers=2) as server:
        added = add_job(
            server, id="tick", func=PRINT_TEST, args=["t"], trigger="interval", seconds=1
        )
        assert added.status_code == 200
        scrapes: list[set[str]] = []

        def leaders() -> set[str] | None:
            """The pids holding a valid lease now, or None if this scrape reached the stopped
            worker (its own connections wait while it is stopped)."""
            try:
                text = httpx.get(f"{server.base_url}/metrics", timeout=1).text
            except httpx.TimeoutException:
                return None
            now = time.time()
            found = re.findall(
                r'^scheduler_lease_expiry_seconds\{pid="(\d+)"\} ([\d.e+]+)$', text, re.M
            )
            holding = {pid for pid, until in found if float(until) > now}
            scrapes.append(holding)
            assert len(holding) <= 1, holding
            return holding

        poll(lambda: bool(leaders()), 15)
        stalled = int(next(iter(leaders() or {"0"})))
        os.kill(stalled, signal.SIGSTOP)
        try:
            poll(lambda: bool((leaders() or set()) - {str(stalled)}), 15)  # the other took over
        finally:
            os.kill(stalled, signal.SIGCONT)
        deadline = time.monotonic() + 6
        while time.monotonic() < deadline:  # the stalled one wakes up: still one leader
            leaders()
        runs = httpx.get(
            f"{server.base_url}/scheduler/jobs/tick/runs", auth=ADMIN, timeout=5
        ).json()
        scheduled = [run["scheduled_time"] for run in runs if run["outcome"] == "success"]
        assert scheduled and len(scheduled) == len(set(scheduled)), scheduled
        stepped_down = rf"\[{stalled}\] scheduler (lease lapsed|leadership lost)"
        poll(lambda: re.search(stepped_down, server.log()) is not None, 10)
        assert len(scrapes) > 10 and all(len(holding) <= 1 for holding in scrapes)
