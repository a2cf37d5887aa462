"""`make conformance` (conformance/run.py): its verdict on Autobahn|Testsuite's reports, and
that it says so and exits 0 where no Python 2.7 exists (the rest of the suite never needs it)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from conformance import run
from tests.e2e.server import PROJECT_ROOT


def test_without_python_2_7_it_says_so_and_exits_0(tmp_path) -> None:
    env = {
        key: value for key, value in os.environ.items() if key not in ("PYTHON27", "PYENV_VERSION")
    }
    env.update(HOME=str(tmp_path), PATH="/usr/bin:/bin")  # no pyenv, no python2.7
    finished = subprocess.run(
        [sys.executable, "conformance/run.py"],
        cwd=PROJECT_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert finished.returncode == 0, finished.stderr
    assert "no Python 2.7" in finished.stdout


def write_reports(
    outdir: Path,
    results: dict[str, dict[str, tuple[str, list]]],
    descriptions: dict[str, str] | None = None,
) -> None:
    """An Autobahn outdir: index.json and one report per agent and case, each with the
    behaviour, what the case expected and its description."""
    index: dict[str, dict[str, dict]] = {}
    for agent, cases in results.items():
        for case_id, (behavior, expected) in cases.items():
            name = f"{agent}_{case_id}.json"
            report = {
                "expected": {"OK": expected},
                "result": "",
                "description": (descriptions or {}).get(case_id, ""),
            }
            (outdir / name).write_text(json.dumps(report))
            index.setdefault(agent, {})[case_id] = {"behavior": behavior, "reportfile": name}
    (outdir / "index.json").write_text(json.dumps(index))


ECHO = [["message", "Hello", False]]
BINARY_ECHO = [["message", "0xff", True]]
EMPTY_ECHO = [["message", "", False]]
NO_ECHO: list = []


def test_a_failed_case_that_needs_no_echo_fails_the_chat(tmp_path) -> None:
    write_reports(
        tmp_path,
        {
            "service-chat": {"3.1": ("FAILED", NO_ECHO), "6.3.1": ("FAILED", ECHO)},
            "service-relay": {},
            "bare-hypercorn": {},
        },
    )
    failures, counts = run.judge(tmp_path)
    assert [failure.split(" ")[0] for failure in failures] == ["3.1"]  # 6.3.1 needs an echo
    assert counts["service-chat"]["FAILED"] == 2


def test_the_relay_may_not_be_worse_than_bare_hypercorn_but_binary_and_empty_are_by_design(
    tmp_path,
) -> None:
    write_reports(
        tmp_path,
        {
            "service-chat": {},
            "service-relay": {
                "1.1.1": ("FAILED", EMPTY_ECHO),
                "1.2.2": ("FAILED", BINARY_ECHO),
                "5.1": ("NON-STRICT", ECHO),
                "7.1.1": ("OK", ECHO),
            },
            "bare-hypercorn": {
                "1.1.1": ("OK", EMPTY_ECHO),
                "1.2.2": ("OK", BINARY_ECHO),
                "5.1": ("OK", ECHO),
                "7.1.1": ("NON-STRICT", ECHO),
            },
        },
    )
    failures, _ = run.judge(tmp_path)
    assert [failure.split(" ")[0] for failure in failures] == ["5.1"]


def test_without_the_reference_the_relay_may_have_no_failed_case_under_the_cap(tmp_path) -> None:
    """12.x/13.x run on the service alone (`--agents service-relay`): a FAILED case fails the
    run, unless its messages are over WS_MAX_MESSAGE_BYTES (1009 by design)."""
    write_reports(
        tmp_path,
        {
            "service-relay": {
                "12.1.9": ("FAILED", ECHO),
                "12.1.10": ("FAILED", ECHO),
                "12.1.8": ("NON-STRICT", ECHO),
            },
        },
        {
            "12.1.9": "Send 1000 compressed messages each of payload size 65536, "
            "auto-fragment to 0 octets.",
            "12.1.10": "Send 1000 compressed messages each of payload size 131072, "
            "auto-fragment to 0 octets.",
        },
    )
    failures, counts = run.judge(tmp_path)
    assert [failure.split(" ")[0] for failure in failures] == ["12.1.9"]
    assert counts["service-relay"]["FAILED"] == 2


def test_a_case_the_reference_did_not_run_is_judged_alone(tmp_path) -> None:
    """In a whole run the reference skips 12.x/13.x (its echo stalls there): the relay's
    12.x case then fails the run when FAILED, while 3.4 is still judged against the reference."""
    write_reports(
        tmp_path,
        {
            "service-relay": {"3.4": ("NON-STRICT", ECHO), "12.1.1": ("FAILED", ECHO)},
            "bare-hypercorn": {"3.4": ("NON-STRICT", ECHO)},
        },
        {"12.1.1": "Send 1000 compressed messages each of payload size 16, auto-fragment to 0"},
    )
    failures, _ = run.judge(tmp_path)
    assert [failure.split(" ")[0] for failure in failures] == ["12.1.1"]
    assert "12.*" in run.REFERENCE_EXCLUDED and "13.*" in run.REFERENCE_EXCLUDED
