"""The event-loop lag probe (app/loop_lag.py): the lag counts both the loop's own blocking and
the time the worker waited for a CPU; the own lag counts only the first."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time

from prometheus_client import REGISTRY

from app.loop_lag import LoopLagProbe, cpu_wait_seconds
from tests.e2e.server import PROJECT_ROOT
from tests.waiting import eventually


def means() -> dict[str, tuple[float, float]]:
    """Per histogram: (observations, their sum) in this process."""
    return {
        name: (
            REGISTRY.get_sample_value(f"{name}_count") or 0.0,
            REGISTRY.get_sample_value(f"{name}_sum") or 0.0,
        )
        for name in ("event_loop_lag_seconds", "event_loop_own_lag_seconds")
    }


def test_this_kernel_reports_cpu_waits() -> None:
    waited = cpu_wait_seconds()
    assert waited is not None and waited >= 0  # else the own lag is the whole lag


async def test_a_blocking_call_on_the_loop_is_own_lag() -> None:
    before = means()
    probe = LoopLagProbe(interval=0.02)
    probe.start()
    await asyncio.sleep(0)  # one loop turn: the probe starts its sleep
    time.sleep(0.3)  # noqa: ASYNC251 - the blocking call under test: no CPU used or waited for

    async def observed() -> bool:
        return means()["event_loop_own_lag_seconds"][0] > before["event_loop_own_lag_seconds"][0]

    await eventually(observed, timeout=5, interval=0.01)
    await probe.stop()
    after = means()
    for name, (count, total) in after.items():
        assert count > before[name][0]
        assert total - before[name][1] >= 0.25, name


# A worker starved of CPU: pinned to one CPU at the lowest priority beside a process that spins
# there, its loop doing small steps of work. Its lag grows; its own lag stays the steps' size.
STARVED = """
import asyncio, json, os, subprocess, sys, time
os.sched_setaffinity(0, {0})
spinner = subprocess.Popen([sys.executable, "-c",
    "import os\\nos.sched_setaffinity(0, {0})\\nwhile True: pass"])
os.nice(19)
from prometheus_client import REGISTRY
from app.loop_lag import LoopLagProbe

def samples():
    return REGISTRY.get_sample_value("event_loop_lag_seconds_count") or 0

async def main():
    probe = LoopLagProbe(interval=0.05)
    probe.start()
    # Until the probe woke SAMPLES times: a starved worker on a loaded machine may take far
    # longer than 2 s for that (seen in CI at load 8: none in 2 s). The deadline only ends a
    # hung run; the test then fails on the count, not on a division by zero.
    deadline = time.monotonic() + 60
    while samples() < SAMPLES and time.monotonic() < deadline:
        step = time.thread_time() + 0.002
        while time.thread_time() < step:
            pass
        await asyncio.sleep(0)
    await probe.stop()

try:
    asyncio.run(main())
finally:
    spinner.kill()
print(json.dumps({name: [REGISTRY.get_sample_value(name + "_count") or 0,
                         REGISTRY.get_sample_value(name + "_sum") or 0]
                  for name in ("event_loop_lag_seconds", "event_loop_own_lag_seconds")}))
"""
SAMPLES = 10


def test_waiting_for_a_cpu_is_lag_but_not_own_lag() -> None:
    result = subprocess.run(
        [sys.executable, "-c", f"SAMPLES = {SAMPLES}\n{STARVED}"],
        cwd=PROJECT_ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    observed = json.loads(result.stdout.splitlines()[-1])
    for name, (count, _total) in observed.items():
        assert count >= SAMPLES, (name, observed)
    mean = {name: total / count for name, (count, total) in observed.items()}
    assert mean["event_loop_lag_seconds"] >= 0.05, mean  # starved: late by far more than a step
    # Its own steps are 2 ms each: the own lag is a small part of the lag. Not an absolute bound:
    # under the suite's load the VM's stolen time (invisible to the guest's scheduler) and other
    # stalls land in the own lag too (seen: lag 0.93 s, own lag 0.12 s while CI ran).
    assert mean["event_loop_own_lag_seconds"] <= mean["event_loop_lag_seconds"] / 4, mean
