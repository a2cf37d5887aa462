"""Concurrency: the service (A: 2 workers, MariaDB, Redis, production settings) against the
Flask original (B: gunicorn, 2 workers x 8 threads) where a threaded server stalls.

Every scenario loads `GET /api/v1/user/<id>` with wrk (`--timeout 4s`, answers counted by
status) on both servers, in interleaved rounds; a figure is the median of its rounds:
- 32, 256, 1,000 and 4,000 connections;
- `wrk -c32` beside 2,000 idle keep-alive connections, beside 64 slow uploads (a POST's body
  one byte a second) and beside 64 slowloris sockets (headers one byte a second), each
  reconnecting when let go;
- `wrk -c256` with 20 ms of round trip added between each server and MariaDB (bench/
  delay_proxy.py), with the pool and limit defaults a user gets;
- overload: `wrk -c4000` against the service with a deliberately small limit: shed requests
  must get 503 with Retry-After within `HTTP_QUEUE_TIMEOUT` + 0.5 s, and nothing may hang.
"""

from __future__ import annotations

import asyncio
import contextlib
import statistics
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field

import psutil

from bench import http_load, rest
from bench.databases import create_database, drop_database, sync_url
from bench.report import Row, load_average
from bench.servers import ROOT, Server, flask_original, free_port, service, wait_for_port
from bench.slow_clients import IdleOutcome, SlowOutcomes, idle_keepalive, slow_uploads, slowloris

WRK_TIMEOUT_SECONDS = 4
SIDE_WARMUP_SECONDS = 2.0  # slow clients settle in before wrk starts
DATABASE_DELAY_MS = 20
OVERLOAD_LIMIT = "2"  # HTTP_CONCURRENCY of the overload scenario: far below what c4000 offers
QUEUE_TIMEOUT_SECONDS = 2.0  # the default HTTP_QUEUE_TIMEOUT
BODY_TIMEOUT_SECONDS = 10.0  # the default HTTP_BODY_TIMEOUT
SideLoad = Callable[[str, int, float], Awaitable[SlowOutcomes | IdleOutcome]]


@dataclass
class Scenario:
    key: str
    label: str
    connections: int
    side: SideLoad | None = None


def scenarios(smoke: bool) -> list[Scenario]:
    """The scenarios of one round (the smoke run: one small round of each kind)."""
    sockets, idle = (4, 20) if smoke else (64, 2000)
    path = "/api/v1/user"  # a POST route of both servers, for the slow uploads

    async def uploads(host: str, port: int, seconds: float) -> SlowOutcomes:
        return await slow_uploads(host, port, path, sockets, seconds)

    async def loris(host: str, port: int, seconds: float) -> SlowOutcomes:
        return await slowloris(host, port, sockets, seconds)

    async def crowd(host: str, port: int, seconds: float) -> IdleOutcome:
        return await idle_keepalive(host, port, "/healthz", idle, seconds)

    if smoke:
        return [
            Scenario("c32", "4 connections", 4),
            Scenario("slow", f"4 connections + {sockets} slow uploads", 4, uploads),
        ]
    return [
        Scenario("c32", "32 connections", 32),
        Scenario("c256", "256 connections", 256),
        Scenario("c1000", "1,000 connections", 1000),
        Scenario("c4000", "4,000 connections", 4000),
        Scenario("idle", f"32 connections + {idle:,} idle keep-alive", 32, crowd),
        Scenario("slow", f"32 connections + {sockets} slow uploads", 32, uploads),
        Scenario("loris", f"32 connections + {sockets} slowloris sockets", 32, loris),
    ]


@dataclass
class Measured:
    """One scenario on one server over the rounds."""

    loads: list[http_load.LoadResult] = field(default_factory=list)
    sides: list[SlowOutcomes | IdleOutcome] = field(default_factory=list)
    machine_load: list[float] = field(default_factory=list)

    @property
    def ok_per_second(self) -> float:
        return statistics.median(r.ok_per_second for r in self.loads)

    @property
    def p99_ms(self) -> float:
        return statistics.median(r.p99_ms for r in self.loads)

    @property
    def max_ms(self) -> float:
        return max(r.max_ms for r in self.loads)

    @property
    def timeouts(self) -> int:
        return sum(r.timeouts for r in self.loads)

    @property
    def errors(self) -> int:
        """Answers neither 200 nor 503, and socket errors (timeouts apart)."""
        return sum(r.other + r.socket_errors for r in self.loads)

    @property
    def shed(self) -> int:
        return sum(r.shed for r in self.loads)

    @property
    def load(self) -> float:
        return statistics.median(self.machine_load) if self.machine_load else 0.0

    def describe(self) -> str:
        text = (
            f"p99 {self.p99_ms:,.0f} ms, max {self.max_ms:,.0f} ms, {self.errors} errors, "
            f"{self.timeouts} timeouts"
        )
        if self.shed:
            with_retry = sum(r.shed_with_retry_after for r in self.loads)
            text += f", {self.shed} shed (503, {with_retry} with Retry-After)"
        slow = [side for side in self.sides if isinstance(side, SlowOutcomes)]
        if slow:
            statuses: dict[int, int] = {}
            for side in slow:
                for status, count in side.statuses().items():
                    statuses[status] = statuses.get(status, 0) + count
            answers = ", ".join(
                f"{'closed' if status == 0 else status} x{count}"
                for status, count in sorted(statuses.items())
            )
            text += (
                f"; slow sockets: {answers or 'none let go'}, longest held "
                f"{max(side.slowest for side in slow):.1f} s, "
                f"{sum(side.still_open for side in slow)} still held at the end"
            )
        idle = [side for side in self.sides if isinstance(side, IdleOutcome)]
        if idle:
            text += (
                f"; idle crowd: {sum(side.connections for side in idle):,} connections, "
                f"{sum(side.failed for side in idle)} failed"
            )
        return text


def measure(
    url: str,
    connections: int,
    seconds: float,
    side: SideLoad | None,
    server: Server,
) -> tuple[http_load.LoadResult, SlowOutcomes | IdleOutcome | None]:
    """wrk on `url` for `seconds`; with `side`, those clients run meanwhile (from
    `SIDE_WARMUP_SECONDS` before wrk starts to its end)."""

    def wrk() -> http_load.LoadResult:
        return http_load.run(
            url,
            seconds=seconds,
            connections=connections,
            timeout_seconds=WRK_TIMEOUT_SECONDS,
            count_statuses=True,
        )

    async def both() -> tuple[http_load.LoadResult, SlowOutcomes | IdleOutcome | None]:
        if side is None:
            return await asyncio.to_thread(wrk), None
        side_task = asyncio.ensure_future(
            side("127.0.0.1", server.port, SIDE_WARMUP_SECONDS + seconds)
        )
        await asyncio.sleep(SIDE_WARMUP_SECONDS)
        result = await asyncio.to_thread(wrk)
        return result, await side_task

    return asyncio.run(both())


def settle(server: Server, timeout: float = 15.0) -> None:
    """Wait until the server holds (almost) no client connection: thousands of connections
    closing at the end of a scenario must not weigh on the next one's first seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        held = sum(
            1
            for connection in psutil.net_connections(kind="tcp")
            if connection.laddr
            and connection.laddr.port == server.port
            and connection.status == psutil.CONN_ESTABLISHED
        )
        if held <= 8:
            return
        time.sleep(0.2)


@dataclass
class ConcurrencyResults:
    measured: dict[tuple[str, str], Measured] = field(default_factory=dict)  # (scenario, server)

    def of(self, scenario: str, server: str) -> Measured:
        return self.measured.setdefault((scenario, server), Measured())


@contextlib.contextmanager
def delay_proxy(delay_ms: float, target_port: int = 3306) -> Iterator[int]:
    """A TCP delay proxy in front of MariaDB on 127.0.0.1; yields its port."""
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "bench.delay_proxy", str(port), "127.0.0.1", str(target_port)]
        + [str(delay_ms)],
        cwd=ROOT,
    )
    try:
        wait_for_port(port, process)  # type: ignore[arg-type]
        yield port
    finally:
        process.terminate()
        process.wait(10)


def through(url: str, port: int) -> str:
    """`url` with its host and port replaced by the delay proxy's."""
    from sqlalchemy.engine import make_url

    return make_url(url).set(host="127.0.0.1", port=port).render_as_string(hide_password=False)


def run(
    mysql_url: str, redis_url: str, flask_database: str, *, runs: int, seconds: float, smoke: bool,
    log: Callable[[str], None],
) -> list[Row]:  # fmt: skip
    """Every scenario; returns the suite's rows."""
    service_user = rest.seed_service(mysql_url)
    create_database(flask_database)
    try:
        flask_user = rest.seed_flask(flask_database)
        results = ConcurrencyResults()
        body_timeout = 1.0 if smoke else BODY_TIMEOUT_SECONDS
        service_env = {"HTTP_BODY_TIMEOUT": str(body_timeout)}
        with (
            service(mysql_url, redis_url, **service_env) as a,
            flask_original(sync_url(flask_database)) as b,
        ):
            urls = {
                "A": (a, f"{a.http}/api/v1/user/{service_user}"),
                "B": (b, f"{b.http}/api/v1/user/{flask_user}"),
            }
            for _server, url in urls.values():  # warm up: pools filled, code paths loaded
                http_load.run(url, seconds=1, connections=8, timeout_seconds=WRK_TIMEOUT_SECONDS)
            for round_number in range(runs):
                for scenario in scenarios(smoke):
                    for name, (server, url) in urls.items():
                        result, side = measure(
                            url, scenario.connections, seconds, scenario.side, server
                        )
                        settle(server)
                        measured = results.of(scenario.key, name)
                        measured.loads.append(result)
                        if side is not None:
                            measured.sides.append(side)
                        measured.machine_load.append(load_average())
                        log(
                            f"  concurrency round {round_number + 1}/{runs} "
                            f"{scenario.key:6s} {name}: {result.ok_per_second:8.1f} ok/s, "
                            f"p99 {result.p99_ms:7.1f} ms, {result.shed} shed, "
                            f"{result.other + result.socket_errors} errors, "
                            f"{result.timeouts} timeouts"
                        )
        rows = scenario_rows(results, smoke, body_timeout)
        if not smoke:
            rows += slow_database_rows(
                mysql_url, redis_url, flask_database, service_user, flask_user,
                runs=runs, seconds=seconds, log=log,
            )  # fmt: skip
            rows += overload_rows(mysql_url, redis_url, service_user, seconds=seconds, log=log)
        return rows
    finally:
        drop_database(flask_database)


def scenario_rows(results: ConcurrencyResults, smoke: bool, body_timeout: float) -> list[Row]:
    rows = []
    base = results.of("c32", "A")
    for scenario in scenarios(smoke):
        a, b = results.of(scenario.key, "A"), results.of(scenario.key, "B")
        rows.append(
            Row(
                f"GET user, {scenario.label}",
                a.ok_per_second,
                "ok/s",
                "Flask original",
                b.ok_per_second,
                ">= 1" if scenario.key == "c1000" else "",
                a.load,
                detail=f"A: {a.describe()} | B: {b.describe()}",
            )
        )
        if scenario.key == "c32":
            continue
        rows.append(
            Row(
                f"GET user, {scenario.label}, against the service's own c32",
                a.ok_per_second,
                "ok/s",
                "the same at 32 connections",
                base.ok_per_second,
                ">= 0.85",
                a.load,
                detail=(
                    f"B: x{b.ok_per_second / max(results.of('c32', 'B').ok_per_second, 1e-9):.2f} "
                    "of its own"
                ),
            )
        )
        if scenario.key == "c1000":
            rows.append(
                Row(
                    "GET user, 1,000 connections, p99",
                    a.p99_ms,
                    "ms",
                    "Flask original",
                    b.p99_ms,
                    "<= 1",
                    a.load,
                )
            )
        if scenario.key in ("c1000", "c4000"):
            rows.append(
                Row(
                    f"GET user, {scenario.label}: unanswered within 4 s, or not 200/503",
                    a.timeouts + a.errors,
                    "requests",
                    f"Flask original: {b.timeouts + b.errors}",
                    target="<= 0",
                    load=a.load,
                    absolute_target=True,
                )
            )
        slow = [side for side in a.sides if isinstance(side, SlowOutcomes)]
        if slow:
            rows.append(
                Row(
                    f"{scenario.label}: longest a slow socket was held",
                    max(side.slowest for side in slow),
                    "s",
                    f"HTTP_BODY_TIMEOUT {body_timeout:g} s + 1",
                    target=f"<= {body_timeout + 1:g}" if scenario.key == "slow" else "",
                    load=a.load,
                    absolute_target=True,
                )
            )
    return rows


def slow_database_rows(
    mysql_url: str, redis_url: str, flask_database: str, service_user: str, flask_user: str, *,
    runs: int, seconds: float, log: Callable[[str], None],
) -> list[Row]:  # fmt: skip
    """`wrk -c256` on both servers with `DATABASE_DELAY_MS` added to each database round trip."""
    measured = {"A": Measured(), "B": Measured()}
    with (
        delay_proxy(DATABASE_DELAY_MS) as port,
        service(through(mysql_url, port), redis_url) as a,
        flask_original(sync_url(through(flask_database, port))) as b,
    ):
        urls = {
            "A": f"{a.http}/api/v1/user/{service_user}",
            "B": f"{b.http}/api/v1/user/{flask_user}",
        }
        for round_number in range(runs):
            for name, url in urls.items():
                result, _ = measure(url, 256, seconds, None, a if name == "A" else b)
                measured[name].loads.append(result)
                measured[name].machine_load.append(load_average())
                log(
                    f"  slow database round {round_number + 1}/{runs} {name}: "
                    f"{result.ok_per_second:8.1f} ok/s, p99 {result.p99_ms:7.1f} ms"
                )
    a, b = measured["A"], measured["B"]
    return [
        Row(
            f"GET user, 256 connections, database {DATABASE_DELAY_MS} ms away",
            a.ok_per_second,
            "ok/s",
            "Flask original",
            b.ok_per_second,
            ">= 2",
            a.load,
            detail=f"A: {a.describe()} | B: {b.describe()}",
        )
    ]


def overload_rows(
    mysql_url: str, redis_url: str, service_user: str, *, seconds: float,
    log: Callable[[str], None],
) -> list[Row]:  # fmt: skip
    """`wrk -c4000` against the service limited to `OVERLOAD_LIMIT` requests per worker."""
    with service(mysql_url, redis_url, HTTP_CONCURRENCY=OVERLOAD_LIMIT) as a:
        result, _ = measure(f"{a.http}/api/v1/user/{service_user}", 4000, seconds, None, a)
    log(
        f"  overload: {result.ok_per_second:.1f} ok/s, {result.shed} shed "
        f"({result.shed_with_retry_after} with Retry-After), max {result.max_ms:.0f} ms, "
        f"{result.timeouts} timeouts, {result.other + result.socket_errors} errors"
    )
    measured = Measured([result], [], [load_average()])
    return [
        Row(
            f"overload (c4000, HTTP_CONCURRENCY={OVERLOAD_LIMIT}): slowest answer",
            result.max_ms / 1000,
            "s",
            f"HTTP_QUEUE_TIMEOUT {QUEUE_TIMEOUT_SECONDS:g} s + 0.5",
            target=f"<= {QUEUE_TIMEOUT_SECONDS + 0.5:g}",
            load=measured.load,
            absolute_target=True,
            detail=measured.describe(),
        ),
        Row(
            "overload: shed answers without Retry-After, timeouts, other errors",
            (result.shed - result.shed_with_retry_after) + result.timeouts + measured.errors,
            "requests",
            target="<= 0",
            load=measured.load,
            absolute_target=True,
        ),
    ]
