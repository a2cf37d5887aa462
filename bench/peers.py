"""Peers: the service against what its users would pick instead (issue 30), on the same route,
table and row, each server with 2 workers, loaded from this process by wrk over loopback.

REST, `GET /api/v1/user/<id>` at 32 and 1,000 connections (`wrk -t2 --timeout 4s`):
- the service on Hypercorn (the default) and on its faster server option (`serve --server`),
  production settings and defaults (its access log, metrics, request ids, security headers and
  admission all on);
- FastAPI on Uvicorn (uvloop, httptools), FastAPI on Granian and Litestar on Uvicorn, each with
  its server's default access log on and off (bench/apps/fastapi_peer.py, litestar_peer.py:
  the same envelope, the read engine set to one round trip per read as the service's is).

Each contender is started once per round and takes both loads; the rounds interleave the
contenders, and a figure is the median of its rounds: answers per second, p99, client timeouts
and the CPU time (user + system) of the server's whole process tree per answer. In each round
the contenders the targets compare (the service on each server, and the peer) run first and
back to back, each round starting with the next of them, then the others likewise; the run's
first load is preceded by one discarded load.

Websockets: the service's fan-out (`/websocket`, 1 sender to `receivers`, Redis pub/sub between
2 workers) against python-socketio's ASGI server with its `AsyncRedisManager` on Uvicorn
(bench/apps/socketio_peer.py, spoken to in Engine.IO 4 over plain websockets by
bench/socketio_client.py): CPU per delivery, p99, and idle memory per connection.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import statistics
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

from bench import http_load, rest, websocket_load
from bench.report import Row, load_average
from bench.servers import ROOT, Server, _run, free_port, service

WRK_TIMEOUT_SECONDS = 4
CONNECTIONS = (32, 1000)
WORKERS = 2
PEER = "fastapi-uvicorn-log"  # "the peer" of issue 30's targets


@dataclass
class Contender:
    key: str
    label: str
    start: Callable[[], contextlib.AbstractContextManager[Server]]
    path: Callable[[str], str]  # the route for a user id


def _peer_command(server: str, module: str, port: int, access_log: bool) -> list[str]:
    if server == "uvicorn":
        command = [sys.executable, "-m", "uvicorn", "--workers", str(WORKERS)]
        command += ["--host", "127.0.0.1", "--port", str(port)]
        return [*command, *([] if access_log else ["--no-access-log"]), module]
    command = [sys.executable, "-m", "granian", "--interface", "asgi", "--workers", str(WORKERS)]
    command += ["--host", "127.0.0.1", "--port", str(port)]
    return [*command, *(["--access-log"] if access_log else []), module]


@contextlib.contextmanager
def peer(
    label: str, server: str, module: str, database_url: str, *, access_log: bool
) -> Iterator[Server]:
    """A peer app of bench/apps/ on `server` ("uvicorn" or "granian"), its default settings."""
    port = free_port()
    env = {"PYTHONPATH": str(ROOT), "BENCH_DATABASE_URL": database_url}
    command = _peer_command(server, module, port, access_log)
    with _run(label, command, port, env=env, ready_workers=WORKERS) as running:
        yield running


def contenders(mysql_url: str, redis_url: str, servers: list[str]) -> list[Contender]:
    """The service on each of `servers` ("hypercorn", or the faster option), and the peers."""
    user_path = "/api/v1/user/{}".format
    listed = [
        Contender(
            f"service-{name}",
            f"this service on {name.capitalize()}"
            + (" (default)" if name == "hypercorn" else " (serve --server)"),
            lambda name=name: service(mysql_url, redis_url, workers=WORKERS, SERVER=name),  # type: ignore[misc]
            user_path,
        )
        for name in servers
    ]
    for framework, module, server in (
        ("FastAPI", "bench.apps.fastapi_peer:app", "uvicorn"),
        ("FastAPI", "bench.apps.fastapi_peer:app", "granian"),
        ("Litestar", "bench.apps.litestar_peer:app", "uvicorn"),
    ):
        for access_log in (True, False):
            key = f"{framework.lower()}-{server}-{'log' if access_log else 'nolog'}"
            label = (
                f"{framework} on {server.capitalize()}, access log {'on' if access_log else 'off'}"
            )
            listed.append(
                Contender(
                    key,
                    label,
                    lambda label=label, module=module, server=server, access_log=access_log: peer(  # type: ignore[misc]
                        label, server, module, mysql_url, access_log=access_log
                    ),
                    user_path,
                )
            )
    return listed


@dataclass
class Measured:
    """One contender at one connection count over the rounds."""

    loads: list[http_load.LoadResult] = field(default_factory=list)
    cpu_us: list[float] = field(default_factory=list)  # per answer
    machine_load: list[float] = field(default_factory=list)

    @property
    def per_second(self) -> float:
        return statistics.median(r.ok_per_second for r in self.loads)

    @property
    def p99_ms(self) -> float:
        return statistics.median(r.p99_ms for r in self.loads)

    @property
    def timeouts(self) -> int:
        return sum(r.timeouts for r in self.loads)

    @property
    def errors(self) -> int:
        return sum(r.other + r.socket_errors + r.shed for r in self.loads)

    @property
    def cpu_per_request_us(self) -> float:
        return statistics.median(self.cpu_us)

    @property
    def load(self) -> float:
        return statistics.median(self.machine_load) if self.machine_load else 0.0

    def describe(self) -> str:
        rounds = ", ".join(f"{r.ok_per_second:,.0f}" for r in self.loads)
        return (
            f"p99 {self.p99_ms:,.0f} ms, {self.timeouts} timeouts, {self.errors} errors "
            f"(503s included); CPU {self.cpu_per_request_us:,.0f} us/answer; rounds {rounds}"
        )


def load_once(server: Server, url: str, connections: int, seconds: float) -> tuple[
    http_load.LoadResult, float
]:  # fmt: skip
    """wrk on `url`; returns its result and the server tree's CPU microseconds per answer."""
    cpu_before = server.cpu_seconds()
    result = http_load.run(
        url,
        seconds=seconds,
        connections=connections,
        timeout_seconds=WRK_TIMEOUT_SECONDS,
        count_statuses=True,
    )
    cpu = server.cpu_seconds() - cpu_before
    return result, cpu / max(result.ok, 1) * 1e6


def measure_rest(
    listed: list[Contender],
    user_id: str,
    *,
    runs: int,
    seconds: float,
    connection_counts: tuple[int, ...],
    log: Callable[[str], None],
) -> dict[tuple[str, int], Measured]:
    measured: dict[tuple[str, int], Measured] = {}
    # The contenders the targets compare (the service's rows and the peer) run back to back in
    # each round, the others after them: this machine's speed drifts by 10-25% over minutes
    # (the same contender, 624 to 861 us an answer within 3 rounds, MariaDB's share alike),
    # and in one run the peer's best round came 2 minutes before the service's worst.
    compared = [c for c in listed if c.key.startswith("service-") or c.key == PEER]
    others = [c for c in listed if c not in compared]
    warmed = False
    for round_number in range(runs):
        # Each round starts with another contender of each group: the first of a run was the
        # slowest while the machine settled (the service's Hypercorn row, first in every
        # round, had its round 1 at x0.63 of the peer against x0.98 and x0.81 in rounds 2
        # and 3).
        order = [
            *_rotated(compared, round_number),
            *_rotated(others, round_number),
        ]
        for contender in order:
            with contender.start() as server:
                url = server.http + contender.path(user_id)
                if not warmed:  # the run's first load: MariaDB's and the machine's caches
                    http_load.run(url, seconds=seconds / 2, connections=32)
                    warmed = True
                http_load.run(url, seconds=1, connections=4)  # warm: pools, caches
                for connections in connection_counts:
                    result, cpu_us = load_once(server, url, connections, seconds)
                    entry = measured.setdefault((contender.key, connections), Measured())
                    entry.loads.append(result)
                    entry.cpu_us.append(cpu_us)
                    entry.machine_load.append(load_average())
                    log(
                        f"  round {round_number + 1}/{runs} c{connections:<5d} "
                        f"{contender.key:24s} {result.ok_per_second:8.0f} ok/s  "
                        f"p99 {result.p99_ms:7.0f} ms  cpu {cpu_us:6.0f} us/answer  "
                        f"timeouts {result.timeouts}  other {result.other + result.shed}"
                    )
                    settle_connections(server)
    return measured


def _rotated(items: list[Contender], by: int) -> list[Contender]:
    if not items:
        return []
    first = by % len(items)
    return [*items[first:], *items[:first]]


def settle_connections(server: Server) -> None:
    from bench.concurrency import settle

    settle(server)


def rest_rows(
    listed: list[Contender], measured: dict[tuple[str, int], Measured], peer: str
) -> list[Row]:
    """Rows for each contender against `peer` at each connection count: answers per second,
    CPU per answer, p99; the targets of issue 30 on the service's rows."""
    rows: list[Row] = []
    labels = {contender.key: contender.label for contender in listed}
    counts = sorted({connections for _, connections in measured})
    for connections in counts:
        reference = measured[(peer, connections)]
        for contender in listed:
            entry = measured[(contender.key, connections)]
            is_default = contender.key == "service-hypercorn"
            is_fast = contender.key.startswith("service-") and not is_default
            if is_default:
                rate_target = ">= 0.8" if connections == 32 else ">= 1.0"
            elif is_fast:
                rate_target = ">= 1.0"
            else:
                rate_target = ""
            peer_label = labels[peer]
            rows.append(
                Row(
                    f"c{connections} GET user: {labels[contender.key]}",
                    entry.per_second,
                    "ok/s",
                    peer_label,
                    reference.per_second,
                    rate_target,
                    entry.load,
                    detail=entry.describe(),
                )
            )
            if contender.key.startswith("service-"):
                if connections == 32 and is_default:
                    rows.append(
                        Row(
                            f"c32 CPU per answer: {labels[contender.key]}",
                            entry.cpu_per_request_us,
                            "us",
                            peer_label,
                            reference.cpu_per_request_us,
                            "<= 1.25",
                            entry.load,
                        )
                    )
                if connections == max(counts):
                    rows.append(
                        Row(
                            f"c{connections} p99: {labels[contender.key]}",
                            entry.p99_ms,
                            "ms",
                            peer_label,
                            reference.p99_ms,
                            "<= 1.0",
                            entry.load,
                            detail=f"{entry.timeouts} timeouts (target 0); peer "
                            f"{reference.timeouts}",
                        )
                    )
                    rows.append(
                        Row(
                            f"c{connections} client timeouts: {labels[contender.key]}",
                            entry.timeouts,
                            "timeouts",
                            target="<= 0",
                            load=entry.load,
                            absolute_target=True,
                        )
                    )
    return rows


def run_rest(
    mysql_url: str,
    redis_url: str,
    *,
    servers: list[str],
    runs: int,
    seconds: float,
    smoke: bool,
    log: Callable[[str], None],
) -> list[Row]:
    if not http_load.available():
        raise SystemExit("wrk is required for the peers benchmark (apt-get install wrk)")
    user_id = rest.seed_service(mysql_url)
    listed = contenders(mysql_url, redis_url, servers)
    if smoke:  # the service and the peer of the targets only
        listed = [c for c in listed if c.key.startswith("service-") or c.key == PEER]
    counts = (4,) if smoke else CONNECTIONS
    measured = measure_rest(
        listed, user_id, runs=runs, seconds=seconds, connection_counts=counts, log=log
    )
    return rest_rows(listed, measured, PEER)


def run_websockets(
    mysql_url: str,
    redis_url: str,
    *,
    runs: int,
    receivers: int,
    rate: float,
    messages: int,
    burst: int,
    idle: int,
    log: Callable[[str], None],
) -> list[Row]:
    """The fan-out and idle memory of the service against python-socketio."""
    from bench import socketio_client

    fanouts: dict[str, list[websocket_load.FanoutResult]] = {"service": [], "socketio": []}
    idles: dict[str, list[float]] = {"service": [], "socketio": []}
    loads: list[float] = []
    for round_number in range(runs):
        with service(mysql_url, redis_url, workers=WORKERS) as server:
            fanouts["service"].append(
                asyncio.run(
                    websocket_load.fanout(
                        server,
                        "/websocket",
                        receivers=receivers,
                        rate=rate,
                        messages=messages,
                        burst=burst,
                    )
                )
            )
        with service(mysql_url, redis_url, workers=WORKERS) as server:
            idles["service"].append(
                asyncio.run(websocket_load.idle_memory(server, "/websocket", idle, join=False))[0]
            )
        with socketio_server(redis_url) as server:
            fanouts["socketio"].append(
                asyncio.run(
                    socketio_client.fanout(
                        server, receivers=receivers, rate=rate, messages=messages, burst=burst
                    )
                )
            )
        with socketio_server(redis_url) as server:
            idles["socketio"].append(asyncio.run(socketio_client.idle_memory(server, idle)))
        loads.append(load_average())
        for name in fanouts:
            outcome = fanouts[name][-1]
            log(
                f"  websockets round {round_number + 1}/{runs} {name:8s} "
                f"cpu/delivery {outcome.cpu_per_delivery_us:6.1f} us  "
                f"p99 {outcome.steady.percentile(0.99):7.1f} ms  missing {outcome.steady.missing}"
                f"  idle {idles[name][-1] / 1024:.1f} KiB"
            )
    load = statistics.median(loads)

    def med(name: str, key: Callable[[websocket_load.FanoutResult], float]) -> float:
        return statistics.median(key(result) for result in fanouts[name])

    peer_label = "python-socketio on Uvicorn (AsyncRedisManager)"
    shape = f"fan-out 1 -> {receivers} at {rate:g} msg/s, 2 workers"
    missing = sum(r.steady.missing for r in fanouts["service"])
    return [
        Row(
            f"{shape}: CPU per delivery",
            med("service", lambda r: r.cpu_per_delivery_us),
            "us",
            peer_label,
            med("socketio", lambda r: r.cpu_per_delivery_us),
            "<= 0.5",
            load,
            detail=f"{missing} deliveries missing",
        ),
        Row(
            f"{shape}: p99",
            med("service", lambda r: r.steady.percentile(0.99)),
            "ms",
            peer_label,
            med("socketio", lambda r: r.steady.percentile(0.99)),
            "<= 1.0",
            load,
        ),
        Row(
            f"idle websocket ({idle:,} open, 2 workers)",
            statistics.median(idles["service"]) / 1024,
            "KiB",
            peer_label,
            statistics.median(idles["socketio"]) / 1024,
            "<= 1.0",
            load,
        ),
    ]


@contextlib.contextmanager
def socketio_server(redis_url: str) -> Iterator[Server]:
    port = free_port()
    command = [sys.executable, "-m", "uvicorn", "--workers", str(WORKERS), "--no-access-log"]
    command += ["--host", "127.0.0.1", "--port", str(port), "bench.apps.socketio_peer:app"]
    env = {"PYTHONPATH": str(ROOT), "BENCH_REDIS_URL": redis_url}
    with _run("python-socketio", command, port, env=env, ready_workers=WORKERS) as running:
        yield running


def _costs_from(
    module: str, *arguments: int, env: dict[str, str], timeout: float, quiet: bool
) -> dict[str, float]:
    """`python -m <module> <arguments>` (bench/hooks.py, bench/log_writers.py) in a process of
    its own, its stderr discarded if `quiet`; the JSON object its last line prints."""
    import json
    import subprocess

    done = subprocess.run(
        [sys.executable, "-m", module, *map(str, arguments)],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT), **env},
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL if quiet else None,
        text=True,
        check=True,
        timeout=timeout,
    )
    costs: dict[str, float] = json.loads(done.stdout.splitlines()[-1])
    return costs


def run_log_writers(*, rounds: int, lines: int, log: Callable[[str], None]) -> list[Row]:
    """The access log line written by the service's writer, by stdlib logging and by structlog
    (bench/log_writers.py), in CPU microseconds per line."""
    costs = _costs_from("bench.log_writers", rounds, lines, env={}, timeout=600, quiet=False)
    load = load_average()
    rows = []
    for name, value in costs.items():
        log(f"  access log line: {name:40s} {value:6.1f} us")
        rows.append(Row(f"access log line: {name}", value, "us/line", load=load))
    return rows


def run_hooks(
    mysql_url: str, redis_url: str, *, rounds: int, requests: int, log: Callable[[str], None]
) -> list[Row]:
    """Each of the service's own per-request hooks, in CPU microseconds per request
    (bench/hooks.py); the target: all of them at most 60 us."""
    from bench.servers import BENCH_SECRET_KEY

    env = {
        "APP_ENV": "production",
        "SECRET_KEY": BENCH_SECRET_KEY,
        "DATABASE_URL": mysql_url,
        "REDIS_URL": redis_url,
    }
    # Its stderr has the access log's lines: written, as in production, and not shown.
    costs = _costs_from("bench.hooks", rounds, requests, env=env, timeout=1800, quiet=True)
    load = load_average()
    spread = costs.pop("spread")
    for name, value in costs.items():
        log(f"  hooks: {name:60s} {value:6.1f} us")
    log(f"  hooks: each figure within about {spread:.1f} us")
    whole = costs.pop("request, everything on")
    total = costs.pop("all hooks")
    rows = [
        Row(
            "the service's own hooks, together",
            total,
            "us/request",
            target="<= 60",
            load=load,
            absolute_target=True,
            detail=f"in-process, GET /methods: {whole:.0f} us a request with every hook on; "
            f"each figure within about {spread:.1f} us (bench/hooks.py)",
        )
    ]
    rows += [
        Row(f"  hook: {name}", value, "us/request", load=load) for name, value in costs.items()
    ]
    return rows
