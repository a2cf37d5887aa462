"""Exactly once across workers and containers: 2 Hypercorn workers plus a second Hypercorn
process, one Redis, one MariaDB; then the leader is killed and another takes over."""

from __future__ import annotations

import os
import signal
import time
from collections import Counter
from datetime import datetime

import httpx
import pytest

from tests.conftest import REDIS_URL
from tests.e2e.server import prepare_deployment, run_server

ADMIN = ("root", "sched-admin-password")
LEASE_SECONDS = 3
TAKEOVER_BOUND = LEASE_SECONDS + 1 + 1  # lease expiry + one leadership tick + a margin


@pytest.fixture(scope="module")
def env(tmp_path_factory) -> dict[str, str]:
    return prepare_deployment(
        tmp_path_factory.mktemp("sched-setup"),
        "sched",
        ADMIN,
        REDIS_URL=REDIS_URL,
        SCHEDULER_ENABLED="true",
        SCHEDULER_LEASE_SECONDS=str(LEASE_SECONDS),
    )


def runs(base_url: str, job_id: str) -> list[dict]:
    response = httpx.get(f"{base_url}/scheduler/jobs/{job_id}/runs", auth=ADMIN, timeout=10)
    assert response.status_code == 200, response.text
    return response.json()


def scheduled_times(entries: list[dict]) -> list[datetime]:
    return [datetime.fromisoformat(run["scheduled_time"]) for run in entries if not run["manual"]]


def test_interval_job_runs_once_per_tick_and_survives_the_leader(env, tmp_path_factory) -> None:
    with (
        run_server(tmp_path_factory.mktemp("sched-a"), env, workers=2) as first,
        run_server(tmp_path_factory.mktemp("sched-b"), env, workers=1) as second,
    ):
        created = httpx.post(
            f"{second.base_url}/scheduler/jobs",
            auth=ADMIN,
            json={
                "id": "tick",
                "func": "app.scheduler.jobs:print_test",
                "trigger": "interval",
                "seconds": 1,
            },
        )
        assert created.status_code == 200, created.text
        assert httpx.get(f"{first.base_url}/scheduler/jobs/tick", auth=ADMIN).status_code == 200

        time.sleep(6)
        before = runs(first.base_url, "tick")
        times = scheduled_times(before)
        assert len(times) >= 4
        assert max(Counter(times).values()) == 1, "a tick ran more than once"
        assert all(run["outcome"] == "success" for run in before)

        leader = httpx.get(f"{first.base_url}/scheduler", auth=ADMIN).json()["leader"]
        leader_pid = int(leader.split(":")[1])
        killed_at = datetime.now().astimezone()
        os.kill(leader_pid, signal.SIGKILL)

        time.sleep(TAKEOVER_BOUND + 5)
        after = runs(second.base_url, "tick")
        times = scheduled_times(after)
        assert max(Counter(times).values()) == 1, "a tick ran more than once around the takeover"
        new_leader = httpx.get(f"{second.base_url}/scheduler", auth=ADMIN).json()["leader"]
        assert new_leader != leader
        steady = sorted(t for t in times if (t - killed_at).total_seconds() > TAKEOVER_BOUND)
        assert len(steady) >= 3, "the job did not keep running after the takeover"
        gaps = {round((b - a).total_seconds()) for a, b in zip(steady, steady[1:], strict=False)}
        assert gaps == {1}, f"after the takeover every tick runs, once: gaps {gaps}"
        assert {run["worker"] for run in after if not run["manual"]} >= {leader, new_leader}
