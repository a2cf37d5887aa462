"""app.request_log.configure_logging: what it changes in the process's logging, checked in a
process of its own (the changes are process-wide)."""

from __future__ import annotations

import json
import subprocess
import sys

from tests.e2e.server import PROJECT_ROOT

PROBE = """
import json, logging
from app.request_log import configure_logging
from app.settings import Settings

configure_logging(Settings(app_env="testing", secret_key="x" * 32, log_format="{format}"))
records = []

class Keep(logging.Handler):
    def emit(self, record):
        records.append(record)

logger = logging.getLogger("app.probe")
logging.getLogger("app").addHandler(Keep())
logger.warning("line %s\\nnext", 1)
record = records[0]
print(json.dumps({{"pathname": record.pathname, "lineno": record.lineno,
                  "thread": record.threadName, "process_name": record.processName}}))
"""


def probe(log_format: str) -> tuple[dict, str]:
    done = subprocess.run(
        [sys.executable, "-c", PROBE.format(format=log_format)],
        cwd=PROJECT_ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return json.loads(done.stdout), done.stderr


def test_records_skip_the_caller_lookup_and_lines_stay_one_line() -> None:
    """The logging HOWTO's "Optimization" (`logging._srcfile = None`, no thread or process
    names): a record no longer looks up its caller's file and line, which no format here
    shows. If a Python release drops the private `_srcfile`, this fails and the tweak goes."""
    record, line = probe("text")
    assert record == {
        "pathname": "(unknown file)",
        "lineno": 0,
        "thread": None,
        "process_name": None,
    }
    assert line.count("\n") == 1 and "app.probe" in line and "line 1\\x0anext" in line
    record, line = probe("json")
    assert record["pathname"] == "(unknown file)"
    assert json.loads(line)["message"] == "line 1\nnext"


def test_the_cached_asctime_is_logging_s_own() -> None:
    """`SecondCachedTime` works the date out once a second: across seconds, milliseconds and
    an explicit `datefmt`, it writes what logging's own `formatTime` writes."""
    import logging

    from app.request_log import CachedTimeJsonFormatter, EscapingFormatter

    reference = logging.Formatter()
    for formatter in (EscapingFormatter(), CachedTimeJsonFormatter()):
        for created in (1_700_000_000.0, 1_700_000_000.5, 1_700_000_000.999, 1_700_000_001.25):
            record = logging.makeLogRecord({"created": created, "msecs": (created % 1) * 1000})
            assert formatter.formatTime(record) == reference.formatTime(record)
            assert formatter.formatTime(record, "%H:%M") == reference.formatTime(record, "%H:%M")
