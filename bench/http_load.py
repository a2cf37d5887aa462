"""HTTP load from wrk (a separate process, written in C, so the client is not the limit):
requests per second and latency percentiles of one route of one server."""

from __future__ import annotations

import re
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

WRK = "wrk"

# Each wrk thread creates users named by its own number and a counter: names never repeat.
POST_USER_SCRIPT = """
local counter = 0
local thread_number = 0
local threads = {}
function setup(thread)
  thread:set("number", #threads + 1)
  table.insert(threads, thread)
end
function init(args)
  thread_number = number
end
request = function()
  counter = counter + 1
  local body = string.format('{"name":"w%s_%d_%d","role":0}', RUN, thread_number, counter)
  return wrk.format("POST", nil, HEADERS, body)
end
"""


@dataclass
class LoadResult:
    requests_per_second: float
    p50_ms: float
    p99_ms: float
    max_ms: float
    requests: int
    errors: int  # non-2xx answers, socket errors and timeouts


def available() -> bool:
    return shutil.which(WRK) is not None


def _ms(value: str, unit: str) -> float:
    return float(value) * {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60000.0}[unit]


def parse(output: str) -> LoadResult:
    """wrk's report (with --latency) as numbers; raises ValueError on an unexpected report."""
    rate = re.search(r"Requests/sec:\s+([\d.]+)", output)
    total = re.search(r"(\d+) requests in", output)
    if rate is None or total is None:
        raise ValueError(f"not a wrk report:\n{output}")
    percentiles = dict(re.findall(r"^\s+(50|99)%\s+([\d.]+(?:us|ms|s|m))$", output, re.M))
    latency_max = re.search(r"Latency\s+\S+\s+\S+\s+([\d.]+)(us|ms|s|m)", output)

    def percentile(key: str) -> float:
        match = re.fullmatch(r"([\d.]+)(us|ms|s|m)", percentiles.get(key, "0ms"))
        assert match is not None
        return _ms(*match.groups())

    errors = 0
    non_2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", output)
    if non_2xx:
        errors += int(non_2xx.group(1))
    socket_errors = re.search(
        r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", output
    )
    if socket_errors:
        errors += sum(int(n) for n in socket_errors.groups())
    return LoadResult(
        requests_per_second=float(rate.group(1)),
        p50_ms=percentile("50"),
        p99_ms=percentile("99"),
        max_ms=_ms(*latency_max.groups()) if latency_max else 0.0,
        requests=int(total.group(1)),
        errors=errors,
    )


def run(
    url: str,
    *,
    seconds: float,
    connections: int,
    threads: int = 2,
    headers: dict[str, str] | None = None,
    post_user_run: str | None = None,
    timeout_seconds: int = 30,
) -> LoadResult:
    """`wrk -t threads -c connections -d seconds --latency url`; with `post_user_run`, each
    request POSTs a new user (JSON) instead of a GET."""
    command = [
        WRK,
        f"-t{threads}",
        f"-c{connections}",
        f"-d{max(1, round(seconds))}s",
        "--latency",
        f"--timeout={timeout_seconds}s",
    ]
    for name, value in (headers or {}).items():
        command += ["-H", f"{name}: {value}"]
    with tempfile.TemporaryDirectory() as folder:
        if post_user_run is not None:
            all_headers = {"Content-Type": "application/json", **(headers or {})}
            lua_headers = ", ".join(f'["{k}"] = "{v}"' for k, v in all_headers.items())
            script = Path(folder) / "post_user.lua"
            script.write_text(
                f'RUN = "{post_user_run}"\nHEADERS = {{{lua_headers}}}\n{POST_USER_SCRIPT}'
            )
            command += ["-s", str(script)]
        completed = subprocess.run(
            [*command, url],
            capture_output=True,
            text=True,
            check=True,
            timeout=seconds + timeout_seconds + 30,
        )
    return parse(completed.stdout)
