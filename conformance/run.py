"""`make conformance`: Autobahn|Testsuite's fuzzingclient against the service's websockets, with
bare Hypercorn as the reference (issue 31).

Autobahn|Testsuite runs only on Python 2.7: this finds one (`PYTHON27`, `python2.7` on the
PATH, or pyenv's), installs the suite into `.venv-autobahn` (gitignored) once, and otherwise says so and
exits 0 (nothing else depends on it). It starts, on free loopback ports:
- the service (production settings, SQLite, in-memory hub, one worker, the frame rate limit
  raised, `WS_COMPRESSION=true` so 12.x/13.x run), tested on `/websocket` (it relays each text
  frame to every client, the sender included: an echo of text) and `/ws/chat` (no echo: the
  cases whose expectation holds no message from the server);
- `conformance/echo_app.py` on bare Hypercorn (no patch of this service) with hypercorn.toml's
  settings: the reference.
Group 9.x is capped at `WS_MAX_MESSAGE_BYTES` (64 KiB): its larger messages are excluded, as
both servers refuse them with 1009 by design.

It passes when `/ws/chat` has no FAILED case among those that need no echo, and `/websocket`
no case worse than the reference (OK > NON-STRICT > INFORMATIONAL > UNIMPLEMENTED > FAILED;
no FAILED case where the reference did not run), except the cases expecting the echo of a
binary or an empty message: by design the relay answers a binary frame with an error frame and
takes an empty one as a heartbeat
(docs/websockets.md); they are counted, not judged. Prints a table; the
HTML report is in `var/conformance/`.

    python conformance/run.py [--cases 1.*,2.*] [--agents service-relay,service-chat]

12.x and 13.x (compression) do not finish on the reference (its raw echo stalls in 12.1.*): they
run on the service alone, and a `/websocket` case the reference did not run passes when it is
not FAILED. Their cases with messages over `WS_MAX_MESSAGE_BYTES` are counted, not judged. The
whole run takes about 5 minutes here.
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import re
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from bench.servers import free_port, wait_for_port

ROOT = Path(__file__).resolve().parent.parent
VENV = ROOT / ".venv-autobahn"
REPORTS = ROOT / "var" / "conformance"
AUTOBAHN = "autobahntestsuite==25.10.1"
MAX_MESSAGE_BYTES = 65536  # WS_MAX_MESSAGE_BYTES's default, hypercorn.toml's frame limit
# 9.x cases with messages over MAX_MESSAGE_BYTES: 256 KiB to 16 MiB in one frame (9.1.2-9.1.6,
# 9.2.2-9.2.6), and 1 MiB or 4 MiB fragmented or chunked (9.3-9.6).
OVER_THE_CAP = [f"9.{group}.{n}" for group in (1, 2) for n in range(2, 7)] + [
    f"9.{group}.*" for group in (3, 4, 5, 6)
]
# 12.4.x sends slices of data1.html, and Autobahn counts a text payload in characters: its
# 65,536-character messages (12.4.9, 12.4.14) are up to 65,563 bytes of UTF-8, over the cap
# (1009 by design). Its 32,768-character ones stay under it (at most 32,795 bytes).
OVER_THE_CAP += ["12.4.9", "12.4.14"]
CHAT_EXCLUDED = ["1.*", "5.*", "9.*", "10.*", "12.*", "13.*"]
# 9.x echo of binary messages (9.2, 9.4, 9.6, 9.8) and of 1,000 empty ones (9.7.1): /websocket
# answers a binary frame with an error frame and takes an empty one as a heartbeat, by design
# (docs/websockets.md); these would fail on the echo (9.7.1 after a 60 s time-out).
RELAY_EXCLUDED = ["9.2.*", "9.4.*", "9.6.*", "9.8.*", "9.7.1"]
# So are the compressed binary echoes: 12.2 (a bitmap), 12.3 (Faust, sent as binary) and 12.5
# (a PDF), in Autobahn's case12_x_x.py order json, bmp, txt, html, pdf.
RELAY_EXCLUDED += ["12.2.*", "12.3.*", "12.5.*"]
# The reference's raw echo stalls in 12.1.* (compression): 12.x/13.x run on the service alone,
# where a case the reference did not run is judged on its own (no FAILED case).
REFERENCE_EXCLUDED = ["12.*", "13.*"]
AGENTS = ("service-relay", "service-chat", "bare-hypercorn")
RANK = {"OK": 4, "NON-STRICT": 3, "INFORMATIONAL": 2, "UNIMPLEMENTED": 1, "FAILED": 0}


def python27() -> str | None:
    candidates = [os.environ.get("PYTHON27"), shutil.which("python2.7")]
    candidates += sorted(glob.glob(os.path.expanduser("~/.pyenv/versions/2.7*/bin/python")))
    for candidate in candidates:
        if candidate and os.access(candidate, os.X_OK):
            probe = subprocess.run(
                [candidate, "-c", "import sys; print(sys.version_info[:2] == (2, 7))"],
                capture_output=True,
                text=True,
            )  # a pyenv shim exists whether or not its version is active
            if probe.stdout.strip() == "True":
                return candidate
    return None


def wstest(python: str) -> Path:
    """`.venv-autobahn/bin/wstest`, installed on first use."""
    executable = VENV / "bin" / "wstest"
    if executable.exists():
        return executable
    has_virtualenv = subprocess.run([python, "-m", "virtualenv", "--version"], capture_output=True)
    if has_virtualenv.returncode != 0:
        subprocess.run(
            [python, "-m", "pip", "install", "--quiet", "--user", "virtualenv<20.22"], check=True
        )
    subprocess.run([python, "-m", "virtualenv", "--quiet", str(VENV)], check=True)
    subprocess.run([str(VENV / "bin" / "pip"), "install", "--quiet", AUTOBAHN], check=True)
    return executable


@contextmanager
def running(command: list[str], port: int, env: dict[str, str], log: Path) -> Iterator[None]:
    with log.open("wb") as output:
        process = subprocess.Popen(
            command, cwd=ROOT, env={**os.environ, **env}, stdout=output, stderr=output
        )
        try:
            wait_for_port(port, process)
            yield
        finally:
            process.terminate()
            try:
                process.wait(30)
            except subprocess.TimeoutExpired:
                process.kill()


def service_env(folder: Path, port: int) -> dict[str, str]:
    return {
        "APP_ENV": "production",
        "SECRET_KEY": secrets.token_urlsafe(32),
        "DATABASE_URL": f"sqlite+aiosqlite:///{folder / 'conformance.db'}",
        "BIND": f"127.0.0.1:{port}",
        "WEB_CONCURRENCY": "1",
        "WS_RATE_LIMIT": "1000000/second",  # 9.7/9.8 send 1,000 messages at once
        "WS_FLOOD_STRIKES": "1000000",
        "WS_IDLE_TIMEOUT": "600",
        "WS_COMPRESSION": "true",
        "LOG_LEVEL": "WARNING",
    }


def expects_a_message(case: dict) -> bool:
    """Whether any outcome the case accepts holds a message from the server (an echo)."""
    for outcomes in (case.get("expected") or {}).values():
        for expectation in outcomes:
            if expectation and expectation[0] == "message":
                return True
    return False


def relayed_differently_by_design(case: dict) -> bool:
    """Whether the case expects the echo of a binary or an empty text message: `/websocket`
    answers a binary frame with an error frame, and takes an empty one as a heartbeat
    (docs/websockets.md)."""
    for outcomes in (case.get("expected") or {}).values():
        for expectation in outcomes:
            if expectation and expectation[0] == "message":
                payload, binary = expectation[1], len(expectation) > 2 and expectation[2]
                if binary or payload in ("", None):
                    return True  # ["message", payload, is_binary]
    return False


def over_the_cap(case: dict) -> bool:
    """Whether the case's messages are larger than `MAX_MESSAGE_BYTES` (12.x/13.x name their
    payload size in the description): refused with 1009 by design, as in 9.x."""
    sizes = re.findall(r"payload size (\d+)", case.get("description") or "")
    return any(int(size) > MAX_MESSAGE_BYTES for size in sizes)


def judge(outdir: Path) -> tuple[list[str], dict[str, Counter[str]]]:
    """The failures by the rules above, and each agent's count of each behaviour."""
    index = json.loads((outdir / "index.json").read_text())
    counts = {
        agent: Counter(r["behavior"] for r in cases.values()) for agent, cases in index.items()
    }
    failures = []
    chat, relay, reference = (
        index.get(agent, {}) for agent in ("service-chat", "service-relay", "bare-hypercorn")
    )
    for case_id, result in chat.items():
        report = json.loads((outdir / result["reportfile"]).read_text())
        if result["behavior"] == "FAILED" and not expects_a_message(report):
            failures.append(f"{case_id} on /ws/chat: FAILED ({report.get('result', '')})")
    for case_id, result in relay.items():
        report = json.loads((outdir / result["reportfile"]).read_text())
        if relayed_differently_by_design(report) or over_the_cap(report):
            continue
        if case_id not in reference and result["behavior"] == "FAILED":
            failures.append(f"{case_id} on /websocket: FAILED ({report.get('result', '')})")
        baseline = reference
        if case_id in baseline and RANK[result["behavior"]] < RANK[baseline[case_id]["behavior"]]:
            failures.append(
                f"{case_id} on /websocket: {result['behavior']}, "
                f"{baseline[case_id]['behavior']} on the reference ({report.get('result', '')})"
            )
    return failures, counts


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cases", default="*", help="comma-separated case patterns")
    parser.add_argument(
        "--agents",
        default=",".join(AGENTS),
        help="comma-separated agents to run (service-relay, service-chat, bare-hypercorn); "
        "without bare-hypercorn, /websocket is judged on its own: no FAILED case",
    )
    arguments = parser.parse_args()
    agents = arguments.agents.split(",")
    if not set(agents) <= set(AGENTS):
        parser.error(f"--agents: choose from {', '.join(AGENTS)}")
    python = python27()
    if python is None:
        print("conformance: no Python 2.7 here (Autobahn|Testsuite needs it): nothing run")
        return 0
    executable = wstest(python)
    folder = Path(tempfile.mkdtemp(prefix="conformance-"))
    service_port, reference_port = free_port(), free_port()
    env = service_env(folder, service_port)
    subprocess.run(
        [sys.executable, "-m", "app", "init-db"],
        cwd=folder,
        env={**os.environ, **env},
        check=True,
        capture_output=True,
    )
    reference = [
        sys.executable, "-m", "hypercorn", "--config", str(ROOT / "hypercorn.toml"),
        "--bind", f"127.0.0.1:{reference_port}", "--workers", "1", "conformance.echo_app:app",
    ]  # fmt: skip
    shutil.rmtree(REPORTS, ignore_errors=True)
    spec = {
        "options": {"failByDrop": False},
        "outdir": str(REPORTS),
        "servers": [
            server
            for server in (
                {"agent": "service-relay", "url": f"ws://127.0.0.1:{service_port}/websocket"},
                {"agent": "service-chat", "url": f"ws://127.0.0.1:{service_port}/ws/chat"},
                {"agent": "bare-hypercorn", "url": f"ws://127.0.0.1:{reference_port}/"},
            )
            if server["agent"] in agents
        ],
        "cases": arguments.cases.split(","),
        "exclude-cases": OVER_THE_CAP,
        # /ws/chat answers no frame with an echo: only the groups that are mostly about
        # refusals, closes and pings run there (the rest would each wait out a time-out).
        "exclude-agent-cases": {
            "service-chat": CHAT_EXCLUDED,
            "service-relay": RELAY_EXCLUDED,
            "bare-hypercorn": REFERENCE_EXCLUDED,
        },
    }
    spec_path = folder / "fuzzingclient.json"
    spec_path.write_text(json.dumps(spec))
    started = time.monotonic()
    with (
        running([sys.executable, "-m", "app", "serve"], service_port, env, folder / "service.log"),
        running(reference, reference_port, {"PYTHONPATH": str(ROOT)}, folder / "reference.log"),
    ):
        subprocess.run(
            [str(executable), "-m", "fuzzingclient", "-s", str(spec_path)],
            cwd=folder,
            check=True,
            stdout=subprocess.DEVNULL,
        )
    failures, counts = judge(REPORTS)
    print(f"conformance: Autobahn|Testsuite fuzzingclient, {time.monotonic() - started:.0f} s")
    for agent, behaviours in counts.items():
        summary = ", ".join(f"{name} {behaviours[name]}" for name in RANK if behaviours[name])
        print(f"  {agent:15s} {summary}")
    for failure in failures:
        print(f"  FAIL {failure}")
    print(f"  report: {REPORTS / 'index.html'}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
