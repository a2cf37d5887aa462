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

# Every thread registers itself (so `done` can add up the threads' counters) and numbers itself.
THREADS_SCRIPT = """
local threads = {}
function setup(thread)
  thread:set("number", #threads + 1)
  table.insert(threads, thread)
end
"""

# Each wrk thread creates users named by its own number and a counter: names never repeat.
POST_USER_SCRIPT = """
local counter = 0
request = function()
  counter = counter + 1
  local body = string.format('{"name":"w%s_%d_%d","role":0}', RUN, number, counter)
  return wrk.format("POST", nil, HEADERS, body)
end
"""

# Answers counted by status: 200, 503 (and whether it said Retry-After), anything else.
STATUS_SCRIPT = """
ok, shed, shed_retry_after, other = 0, 0, 0, 0
response = function(status, headers, body)
  if status == 200 then
    ok = ok + 1
  elseif status == 503 then
    shed = shed + 1
    if headers["Retry-After"] or headers["retry-after"] then
      shed_retry_after = shed_retry_after + 1
    end
  else
    other = other + 1
  end
end
done = function(summary, latency, requests)
  local totals = {ok = 0, shed = 0, shed_retry_after = 0, other = 0}
  for _, thread in ipairs(threads) do
    for name, _ in pairs(totals) do
      totals[name] = totals[name] + thread:get(name)
    end
  end
  io.write(string.format("STATUS ok=%d shed=%d shed_retry_after=%d other=%d\\n",
    totals.ok, totals.shed, totals.shed_retry_after, totals.other))
end
"""


# Each thread stops after `CAP` answers (wrk's own scripts/stop.lua); its main thread still waits
# out `-d`, so a rate is per the whole run. Appended last: it wraps any `response` above.
CAP_SCRIPT = """
local capped_answers = 0
local counted_response = response
response = function(status, headers, body)
  if counted_response then
    counted_response(status, headers, body)
  end
  capped_answers = capped_answers + 1
  if capped_answers >= CAP then
    wrk.thread:stop()
  end
end
"""

# The smoke run's bound (`python -m bench --smoke`, `cap_answers_per_thread`): None, no bound.
_answers_per_thread: int | None = None


def cap_answers_per_thread(answers: int | None) -> None:
    """From now on, each wrk thread stops after `answers` answers (None: it runs for its whole
    `seconds`). The smoke run's loads need a few answers, not a second of both cores each."""
    global _answers_per_thread
    _answers_per_thread = answers


@dataclass
class LoadResult:
    requests_per_second: float
    p50_ms: float
    p99_ms: float
    max_ms: float
    requests: int
    errors: int  # non-2xx answers, socket errors and timeouts
    seconds: float = 0.0  # how long wrk ran
    timeouts: int = 0  # requests unanswered within wrk's --timeout
    socket_errors: int = 0  # connect, read and write errors
    # With `count_statuses`: answers by status (200; 503, and of those with Retry-After; other).
    ok: int = 0
    shed: int = 0
    shed_with_retry_after: int = 0
    other: int = 0

    @property
    def ok_per_second(self) -> float:
        """Successful (200) answers per second."""
        return self.ok / self.seconds if self.seconds else 0.0


def available() -> bool:
    return shutil.which(WRK) is not None


def _ms(value: str, unit: str) -> float:
    return float(value) * {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60000.0}[unit]


def parse(output: str) -> LoadResult:
    """wrk's report (with --latency) as numbers; raises ValueError on an unexpected report."""
    rate = re.search(r"Requests/sec:\s+([\d.]+)", output)
    total = re.search(r"(\d+) requests in ([\d.]+)(ms|s|m)", output)
    if rate is None or total is None:
        raise ValueError(f"not a wrk report:\n{output}")
    percentiles = dict(re.findall(r"^\s+(50|99)%\s+([\d.]+(?:us|ms|s|m))\s*$", output, re.M))
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
    connect = read = write = timeouts = 0
    if socket_errors:
        connect, read, write, timeouts = (int(n) for n in socket_errors.groups())
        errors += connect + read + write + timeouts
    statuses = re.search(r"STATUS ok=(\d+) shed=(\d+) shed_retry_after=(\d+) other=(\d+)", output)
    ok, shed, shed_retry_after, other = (
        (int(n) for n in statuses.groups()) if statuses else (0, 0, 0, 0)
    )
    return LoadResult(
        requests_per_second=float(rate.group(1)),
        p50_ms=percentile("50"),
        p99_ms=percentile("99"),
        max_ms=_ms(*latency_max.groups()) if latency_max else 0.0,
        requests=int(total.group(1)),
        errors=errors,
        seconds=_ms(total.group(2), total.group(3)) / 1000,
        timeouts=timeouts,
        socket_errors=connect + read + write,
        ok=ok,
        shed=shed,
        shed_with_retry_after=shed_retry_after,
        other=other,
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
    count_statuses: bool = False,
) -> LoadResult:
    """`wrk -t threads -c connections -d seconds --latency url`; with `post_user_run`, each
    request POSTs a new user (JSON) instead of a GET; with `count_statuses`, answers are
    counted by status (`LoadResult.ok`, `.shed`, ...; the Lua callback costs wrk some speed);
    each thread stops early when `cap_answers_per_thread` set a bound."""
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
    script_parts = [THREADS_SCRIPT]
    if post_user_run is not None:
        all_headers = {"Content-Type": "application/json", **(headers or {})}
        lua_headers = ", ".join(f'["{k}"] = "{v}"' for k, v in all_headers.items())
        script_parts.append(
            f'RUN = "{post_user_run}"\nHEADERS = {{{lua_headers}}}\n{POST_USER_SCRIPT}'
        )
    if count_statuses:
        script_parts.append(STATUS_SCRIPT)
    if _answers_per_thread is not None:
        script_parts.append(f"CAP = {_answers_per_thread}\n{CAP_SCRIPT}")
    with tempfile.TemporaryDirectory() as folder:
        if len(script_parts) > 1:
            script = Path(folder) / "load.lua"
            script.write_text("\n".join(script_parts))
            command += ["-s", str(script)]
        completed = subprocess.run(
            [*command, url],
            capture_output=True,
            text=True,
            check=True,
            timeout=seconds + timeout_seconds + 60,
        )
    return parse(completed.stdout)
