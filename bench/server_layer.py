"""The server layer alone (issue 30: what the Hypercorn path still costs per request): the raw
ASGI app of bench/apps/raw_asgi.py on one worker of
- Hypercorn with the service's patches and HTTP/1 on httptools (the default, app/hypercorn_http1.py),
- the same with `HTTP1_PARSER=h11` (Hypercorn's own protocol),
- Uvicorn with httptools and uvloop (the floor: what `serve --server uvicorn` runs on),
each loaded by `wrk -t1 -c32` in interleaved rounds; a figure is the median of the rounds'
CPU time (user + system) of the server process per answer.
"""

from __future__ import annotations

import contextlib
import statistics
import sys
from collections.abc import Callable, Iterator

from bench import http_load
from bench.report import Row, load_average
from bench.servers import ROOT, Server, _run, free_port

CONNECTIONS = 32


@contextlib.contextmanager
def _server(kind: str) -> Iterator[Server]:
    port = free_port()
    if kind == "uvicorn":
        command = [sys.executable, "-m", "uvicorn", "--no-access-log", "--port", str(port)]
        command.append("bench.apps.raw_asgi:app")
    else:
        command = [sys.executable, "-m", "bench.apps.patched_hypercorn", str(port), kind]
    with _run(f"raw ASGI on {kind}", command, port, env={"PYTHONPATH": str(ROOT)}) as server:
        yield server


LABELS = {
    "httptools": "Hypercorn, patched, HTTP/1 on httptools (default)",
    "h11": "Hypercorn, patched, HTTP1_PARSER=h11",
    "uvicorn": "Uvicorn (httptools, uvloop)",
}


def run(*, runs: int, seconds: float, log: Callable[[str], None]) -> list[Row]:
    cpu: dict[str, list[float]] = {kind: [] for kind in LABELS}
    rates: dict[str, list[float]] = {kind: [] for kind in LABELS}
    loads: list[float] = []
    kinds = list(LABELS)
    for round_number in range(runs):
        first = round_number % len(kinds)
        for kind in [*kinds[first:], *kinds[:first]]:
            with _server(kind) as server:
                url = server.http + "/"
                http_load.run(url, seconds=1, connections=4, threads=1)  # warm
                before = server.cpu_seconds()
                result = http_load.run(url, seconds=seconds, connections=CONNECTIONS, threads=1)
                used = server.cpu_seconds() - before
                cpu[kind].append(used / max(result.requests, 1) * 1e6)
                rates[kind].append(result.requests_per_second)
                loads.append(load_average())
                log(
                    f"  round {round_number + 1}/{runs} {kind:10s} "
                    f"{result.requests_per_second:8.0f} req/s  cpu {cpu[kind][-1]:6.1f} us/answer"
                )
    load = statistics.median(loads)
    h11 = statistics.median(cpu["h11"])
    return [
        Row(
            f"raw ASGI c{CONNECTIONS}, CPU per answer: {LABELS[kind]}",
            statistics.median(cpu[kind]),
            "us",
            LABELS["h11"],
            h11,
            "",
            load,
            detail=f"{statistics.median(rates[kind]):,.0f} req/s on one worker",
        )
        for kind in kinds
    ]
