"""The worker's shutdown backstop (app/supervisor.py, issue 32): a worker told to stop (the
supervisor's stop event, a SIGTERM, or its supervisor gone) whose shutdown hangs is ended with
its stacks in the log; a worker not told to stop is left alone. Each case runs in a process of
its own, its main thread held in `select` as the worker seen under load was."""

from __future__ import annotations

import signal
import subprocess
import sys
import textwrap
import time

from tests.waiting import poll

DEADLINE_SECONDS = 0.5

CHILD = textwrap.dedent(
    """
    import asyncio, os, select, signal, sys, threading, time
    from multiprocessing import get_context
    from app.supervisor import ShutdownBackstop

    stop = get_context("spawn").Event()
    case = sys.argv[1]
    supervisor = 1 if case == "orphaned" else os.getppid()
    backstop = ShutdownBackstop({deadline}, stop, supervisor)
    backstop.start()
    if case == "stopped":
        stop.set()
        print("stopped", time.monotonic(), flush=True)
    if case == "sigterm":
        async def held():
            asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, backstop.terminated)
            print("ready", flush=True)
            await asyncio.Event().wait()  # a shutdown that never ends
        asyncio.run(held())
    if case == "serving":
        threading.Event().wait(3 * {deadline} + 1)  # serves, then exits by itself
        sys.exit(0)
    def held_in_select():
        select.select([], [], [], 3600)  # a shutdown that never ends
    held_in_select()
    """
).format(deadline=DEADLINE_SECONDS)


def _start(case: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-c", CHILD, case],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _ended(child: subprocess.Popen[str]) -> tuple[int, str]:
    try:
        _, stderr = child.communicate(timeout=30)
    finally:
        child.kill()
    return child.returncode, stderr


def _assert_backstop_ended(code: int, stderr: str) -> None:
    assert code == 1, stderr
    assert "still running" in stderr and "told to stop" in stderr, stderr
    assert "most recent call first" in stderr, stderr  # every thread's stack
    assert "in held_in_select" in stderr, stderr  # where the shutdown was held


def test_a_stopped_worker_whose_shutdown_hangs_is_ended_with_its_stacks() -> None:
    child = _start("stopped")
    assert child.stdout is not None
    word, stopped_at = child.stdout.readline().split()
    assert word == "stopped"
    poll(lambda: child.poll() is not None, timeout=30)
    # The deadline counts from the stop (CLOCK_MONOTONIC is the same in both processes).
    assert time.monotonic() - float(stopped_at) >= DEADLINE_SECONDS
    _assert_backstop_ended(*_ended(child))


def test_a_worker_whose_supervisor_is_gone_is_ended() -> None:
    _assert_backstop_ended(*_ended(_start("orphaned")))


def test_a_sigterm_the_worker_handles_but_never_finishes_still_ends_it() -> None:
    child = _start("sigterm")
    assert child.stdout is not None
    assert child.stdout.readline().strip() == "ready"
    child.send_signal(signal.SIGTERM)
    code, stderr = _ended(child)
    assert code == 1, stderr
    assert "still running" in stderr and "most recent call first" in stderr, stderr


def test_a_worker_not_told_to_stop_is_left_alone() -> None:
    code, stderr = _ended(_start("serving"))
    assert code == 0, stderr
    assert "still running" not in stderr, stderr
