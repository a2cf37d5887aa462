"""`python -m bench`: every benchmark of issue 11 in one run, printed as one table.

The service (2 workers, MariaDB, Redis) against its baselines, each in its own process, loaded
from this one over loopback: REST (wrk) against the Flask original, a bare Quart route and a
raw ASGI app; fan-out, a burst, joins and idle memory against a bare `websockets` server (no
compression) and the gevent-websocket relay. REST figures are medians of `--runs` interleaved
rounds; websocket figures the medians of `--runs` runs. `--smoke` runs everything tiny (the
test suite does, so the benchmark cannot rot): one round, a second of wrk at 4 connections
whose threads stop after 100 answers each, a few websocket clients. The databases it creates
are dropped at the end; the Redis database it is given (default 7) is emptied before and
after. The `tracing` suite measures the cost of OpenTelemetry tracing (bench/tracing.py), the
`cluster` suite the fan-out on a Redis Cluster of the benchmark's own against one Redis
server.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import signal
import statistics
import sys
import time
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

from redis import Redis
from sqlalchemy.engine import make_url

from bench import (
    concurrency,
    conditional,
    http_load,
    peers,
    rest,
    server_layer,
    tracing,
    websocket_load,
)
from bench.databases import create_database, drop_database, sync_url
from bench.redis_cluster import redis_cluster
from bench.report import Row, load_average, render
from bench.servers import (
    Server,
    flask_original,
    gevent_relay,
    hypercorn_app,
    prepare_service,
    service,
    websockets_relay,
)

T = TypeVar("T")
# A smoke run's wrk threads stop after this many answers each (bench/http_load.py).
SMOKE_ANSWERS_PER_THREAD = 100


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def parse_arguments(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.split("\n")[0])
    parser.add_argument(
        "--mysql-url",
        default="mysql+aiomysql://root@127.0.0.1:3306/qf_bench",
        help="the service's database (created, dropped at the end); the Flask "
        "original's is the same name with _flask",
    )
    parser.add_argument(
        "--redis-url",
        default="redis://127.0.0.1:6379/7",
        help="a Redis database the benchmark may empty",
    )
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=10, help="wrk duration per route")
    parser.add_argument("--connections", type=int, default=64, help="wrk connections")
    parser.add_argument("--receivers", type=int, default=1000)
    parser.add_argument("--rate", type=float, default=10, help="fan-out messages per second")
    parser.add_argument("--messages", type=int, default=100, help="fan-out messages per run")
    parser.add_argument("--burst", type=int, default=200)
    parser.add_argument("--joins", type=int, default=1000)
    parser.add_argument("--idle", default="2000,10000", help="idle connection counts")
    parser.add_argument(
        "--only",
        "--suite",
        dest="only",
        default="rest,conditional,fanout,joins,idle,concurrency,tracing,cluster,peers",
        help="comma-separated suites to run",
    )
    parser.add_argument(
        "--servers",
        default="hypercorn,uvicorn",
        help="peers suite: the servers the service runs on (comma-separated, `serve --server`)",
    )
    parser.add_argument(
        "--baseline-rev",
        help="tracing suite: also run the service as it was at this git revision",
    )
    parser.add_argument("--smoke", action="store_true", help="everything tiny (for the tests)")
    parser.add_argument("--json", help="also write the rows to this file")
    arguments = parser.parse_args(argv)
    if arguments.smoke:
        arguments.runs, arguments.seconds, arguments.connections = 1, 1, 4
        arguments.receivers, arguments.rate, arguments.messages = 5, 50, 5
        arguments.burst, arguments.joins, arguments.idle = 10, 10, "20"
    return arguments


def flask_url(url: str) -> str:
    return url.rsplit("/", 1)[0] + "/" + url.rsplit("/", 1)[1].split("?")[0] + "_flask"


def asyncmy_url(url: str) -> str:
    return make_url(url).set(drivername="mysql+asyncmy").render_as_string(hide_password=False)


def run_rest(arguments: argparse.Namespace, redis_url: str) -> list[Row]:
    if not http_load.available():
        raise SystemExit("wrk is required for the REST benchmark (apt-get install wrk)")
    flask_database = flask_url(arguments.mysql_url)
    create_database(flask_database)
    try:
        service_user = rest.seed_service(arguments.mysql_url)
        flask_user = rest.seed_flask(flask_database)
        with (
            service(arguments.mysql_url, redis_url) as quart_service,
            service(asyncmy_url(arguments.mysql_url), redis_url) as quart_service_asyncmy,
            flask_original(sync_url(flask_database)) as flask,
            hypercorn_app(
                "bare Quart", "bench.apps.bare_quart:app", BENCH_DATABASE_URL=arguments.mysql_url
            ) as bare,
            hypercorn_app("raw ASGI", "bench.apps.raw_asgi:app") as raw,
        ):
            setup = rest.RestSetup(
                quart_service,
                quart_service_asyncmy,
                flask,
                bare,
                raw,
                service_user,
                flask_user,
                rest.issue_token(quart_service),
            )
            log("REST: warming up")
            for probe in rest.probes():
                if not (probe.post_user or arguments.smoke):
                    http_load.run(
                        probe.url(setup), seconds=1, connections=4, headers=probe.headers(setup)
                    )
            return rest.measure(
                setup,
                runs=arguments.runs,
                seconds=arguments.seconds,
                connections=arguments.connections,
                log=log,
            )
    finally:
        drop_database(flask_database)


def run_async(coroutine: Coroutine[Any, Any, T]) -> T:
    return asyncio.run(coroutine)


def fanout_rounds(
    arguments: argparse.Namespace,
    servers: dict[str, Callable[[], contextlib.AbstractContextManager[Server]]],
    paths: dict[str, str],
    results: dict[str, list[websocket_load.FanoutResult]],
    loads: list[float],
    label: str,
) -> None:
    """`--runs` rounds of the fan-out on each server in turn; appends to `results`, `loads`."""
    for round_number in range(arguments.runs):
        for name, start in servers.items():
            with start() as server:
                outcome = run_async(
                    websocket_load.fanout(
                        server,
                        paths[name],
                        receivers=arguments.receivers,
                        rate=arguments.rate,
                        messages=arguments.messages,
                        burst=arguments.burst,
                        deflate=name == "deflate",
                    )
                )
            results[name].append(outcome)
            loads.append(load_average())
            log(
                f"  {label} round {round_number + 1}/{arguments.runs} {name:8s} "
                f"p50 {outcome.steady.p50_ms:7.2f} ms  p99 {outcome.steady.percentile(0.99):7.2f} ms  "
                f"cpu/delivery {outcome.cpu_per_delivery_us:6.1f} us  burst p50 "
                f"{outcome.burst.p50_ms:8.1f} ms p99 {outcome.burst.percentile(0.99):8.1f} ms  "
                f"closed 1013: {outcome.burst.closed_1013}  missing {outcome.burst.missing}"
            )


def run_fanout(arguments: argparse.Namespace, redis_url: str) -> list[Row]:
    results: dict[str, list[websocket_load.FanoutResult]] = {
        "service": [],
        "deflate": [],
        "raw": [],
        "bare": [],
        "gevent": [],
    }
    loads: list[float] = []
    servers = {
        "service": lambda: service(arguments.mysql_url, redis_url),
        # WS_COMPRESSION=true and clients offering permessage-deflate, as browsers do.
        "deflate": lambda: service(arguments.mysql_url, redis_url, WS_COMPRESSION="true"),
        # The floor on the same server: raw ASGI, 2 workers, Redis pub/sub between them.
        "raw": lambda: hypercorn_app(
            "raw ASGI relay", "bench.apps.raw_asgi_relay:app", BENCH_REDIS_URL=redis_url
        ),
        "bare": websockets_relay,
        "gevent": gevent_relay,
    }
    paths = {
        "service": "/websocket",
        "deflate": "/websocket",
        "raw": "/",
        "bare": "/",
        "gevent": "/",
    }
    fanout_rounds(arguments, servers, paths, results, loads, "fan-out")

    def med(name: str, key: Callable[[websocket_load.FanoutResult], float]) -> float:
        return statistics.median(key(result) for result in results[name])

    load = statistics.median(loads)
    shape = f"1 -> {arguments.receivers} at {arguments.rate:g} msg/s"
    rows = [
        Row(
            "fan-out, server CPU per delivery",
            med("service", lambda r: r.cpu_per_delivery_us),
            "us",
            "raw ASGI relay on Hypercorn (2 workers + Redis)",
            med("raw", lambda r: r.cpu_per_delivery_us),
            "<= 1.25",
            load,
        )
    ]
    for reference, label in (("bare", "bare websockets"), ("gevent", "gevent-websocket relay")):
        rows += [
            Row(
                f"fan-out {shape}, p50",
                med("service", lambda r: r.steady.p50_ms),
                "ms",
                label,
                med(reference, lambda r: r.steady.p50_ms),
                "<= 1.5" if reference == "bare" else "",
                load,
            ),
            Row(
                f"fan-out {shape}, p99",
                med("service", lambda r: r.steady.percentile(0.99)),
                "ms",
                label,
                med(reference, lambda r: r.steady.percentile(0.99)),
                "<= 2" if reference == "bare" else "",
                load,
            ),
            Row(
                "fan-out, server CPU per delivery",
                med("service", lambda r: r.cpu_per_delivery_us),
                "us",
                label,
                med(reference, lambda r: r.cpu_per_delivery_us),
                "",
                load,
            ),
        ]
    rows.append(
        Row(
            "fan-out CPU per delivery, WS_COMPRESSION=true",
            med("deflate", lambda r: r.cpu_per_delivery_us),
            "us",
            "compression off (default)",
            med("service", lambda r: r.cpu_per_delivery_us),
            "",
            load,
        )
    )
    for name, label in (
        ("service", "this service"),
        ("bare", "bare websockets"),
        ("gevent", "gevent-websocket relay"),
    ):
        rows.append(
            Row(
                f"burst of {arguments.burst}: p50 / p99 ({label})",
                med(name, lambda r: r.burst.p50_ms),
                "ms",
                f"p99 {med(name, lambda r: r.burst.percentile(0.99)):,.0f} ms, closed 1013: "
                f"{med(name, lambda r: r.burst.closed_1013):.0f} of {arguments.receivers}",
                None,
                "",
                load,
            )
        )
    return rows


def run_joins(arguments: argparse.Namespace, redis_url: str) -> list[Row]:
    outcomes: list[websocket_load.JoinResult] = []
    loads = []
    for round_number in range(arguments.runs):
        Redis.from_url(redis_url).flushdb()
        with service(arguments.mysql_url, redis_url) as server:
            outcome = run_async(websocket_load.joins(server, arguments.joins))
        outcomes.append(outcome)
        loads.append(load_average())
        log(
            f"  joins round {round_number + 1}/{arguments.runs}: {outcome.seconds:.2f} s, "
            f"{outcome.frames} frames, {outcome.failed} failed"
        )
    if any(outcome.failed for outcome in outcomes):
        raise RuntimeError("joins failed: " + ", ".join(str(o.failed) for o in outcomes))
    seconds = statistics.median(o.seconds for o in outcomes)
    frames = statistics.median(o.frames for o in outcomes)
    load = statistics.median(loads)
    recoveries: list[websocket_load.ReconnectResult] = []
    for round_number in range(arguments.runs):
        Redis.from_url(redis_url).flushdb()
        with service(arguments.mysql_url, redis_url) as server:
            recovery = run_async(websocket_load.reconnects(server, arguments.joins))
        recoveries.append(recovery)
        log(
            f"  reconnect round {round_number + 1}/{arguments.runs}: {recovery.seconds:.2f} s, "
            f"{recovery.recovered} recovered, {recovery.failed} not"
        )
    return [
        Row(f"{arguments.joins} joins to one room", seconds, "s", target="<= 2", load=load),
        Row(
            f"{arguments.joins} joins: frames per join",
            frames / arguments.joins,
            "frames",
            f"{frames:,.0f} frames in all",
            load=load,
        ),
        Row(
            f"{arguments.joins} clients reconnect at once with recovery",
            statistics.median(r.seconds for r in recoveries),
            "s",
            f"{min(r.recovered for r in recoveries)} of {arguments.joins} recovered every message",
            target="<= 2",
            load=load,
            detail="from the first reconnect to the last recovered history",
        ),
        Row(
            f"{arguments.joins} clients reconnect: not recovered",
            max(r.failed for r in recoveries),
            "clients",
            target="<= 0",
            load=load,
            absolute_target=True,
        ),
    ]


def run_idle(arguments: argparse.Namespace, redis_url: str) -> list[Row]:
    """Resident memory per idle websocket: the seed's `/websocket` on one worker against a bare
    Quart relay (the floor of a Quart websocket), for the first count; `/ws/chat` joined to one
    of 50 rooms on two workers against a bare `websockets` server, for every count."""
    rows = []
    for index, count in enumerate(int(n) for n in arguments.idle.split(",")):
        values: dict[str, list[float]] = {"service": [], "bare": [], "relay": [], "quart": []}
        loads = []
        for _ in range(arguments.runs):
            if index == 0:
                with hypercorn_app(
                    "bare Quart relay", "bench.apps.bare_quart_relay:app", workers=1
                ) as server:
                    values["quart"].append(
                        run_async(websocket_load.idle_memory(server, "/", count, join=False))[0]
                    )
                with service(arguments.mysql_url, redis_url, workers=1) as server:
                    values["relay"].append(
                        run_async(
                            websocket_load.idle_memory(server, "/websocket", count, join=False)
                        )[0]
                    )
            with websockets_relay() as server:
                per_connection, _ = run_async(
                    websocket_load.idle_memory(server, "/", count, join=False)
                )
                values["bare"].append(per_connection)
            with service(arguments.mysql_url, redis_url) as server:
                per_connection, refused = run_async(
                    websocket_load.idle_memory(server, "/ws/chat", count, join=True)
                )
                values["service"].append(per_connection)
            if refused:
                log(f"  idle {count}: {refused} joins refused (store unavailable), still open")
            loads.append(load_average())
            log(
                f"  idle {count}: /ws/chat {values['service'][-1] / 1024:.1f} KiB, "
                f"bare websockets {values['bare'][-1] / 1024:.1f} KiB"
                + (
                    f", /websocket {values['relay'][-1] / 1024:.1f} KiB, bare Quart relay "
                    f"{values['quart'][-1] / 1024:.1f} KiB"
                    if index == 0
                    else ""
                )
                + " per connection"
            )
        load = statistics.median(loads)
        if index == 0:
            rows.append(
                Row(
                    f"idle /websocket ({count:,} open, 1 worker)",
                    statistics.median(values["relay"]) / 1024,
                    "KiB",
                    "bare Quart relay",
                    statistics.median(values["quart"]) / 1024,
                    "<= 1.1",
                    load,
                )
            )
        rows.append(
            Row(
                f"idle websocket ({count:,} open, joined)",
                statistics.median(values["service"]) / 1024,
                "KiB",
                "bare websockets",
                statistics.median(values["bare"]) / 1024,
                "",
                load,
            )
        )
    return rows


def run_concurrency(arguments: argparse.Namespace, redis_url: str) -> list[Row]:
    if not http_load.available():
        raise SystemExit("wrk is required for the concurrency benchmark (apt-get install wrk)")
    return concurrency.run(
        arguments.mysql_url,
        redis_url,
        flask_url(arguments.mysql_url),
        runs=arguments.runs,
        seconds=arguments.seconds,
        smoke=arguments.smoke,
        log=log,
    )


def run_cluster(arguments: argparse.Namespace, redis_url: str) -> list[Row]:
    """The fan-out on a Redis Cluster of 3 masters against one Redis server, interleaved."""
    results: dict[str, list[websocket_load.FanoutResult]] = {"single": [], "cluster": []}
    loads = []
    with redis_cluster() as nodes:
        servers = {
            "single": lambda: service(arguments.mysql_url, redis_url),
            "cluster": lambda: service(arguments.mysql_url, None, REDIS_CLUSTER_NODES=nodes),
        }
        paths = dict.fromkeys(servers, "/websocket")
        fanout_rounds(arguments, servers, paths, results, loads, "cluster")

    def med(name: str, key: Callable[[websocket_load.FanoutResult], float]) -> float:
        return statistics.median(key(result) for result in results[name])

    load = statistics.median(loads)
    shape = f"fan-out 1 -> {arguments.receivers} at {arguments.rate:g} msg/s, Redis Cluster"
    single = "one Redis server"
    return [
        Row(f"{shape}, p50", med("cluster", lambda r: r.steady.p50_ms), "ms", single,
            med("single", lambda r: r.steady.p50_ms), "", load),
        Row(f"{shape}, p99", med("cluster", lambda r: r.steady.percentile(0.99)), "ms", single,
            med("single", lambda r: r.steady.percentile(0.99)), "", load),
        Row(f"{shape}, CPU per delivery", med("cluster", lambda r: r.cpu_per_delivery_us), "us",
            single, med("single", lambda r: r.cpu_per_delivery_us), "", load),
    ]  # fmt: skip


def run_tracing(arguments: argparse.Namespace, redis_url: str) -> list[Row]:
    if not http_load.available():
        raise SystemExit("wrk is required for the tracing benchmark (apt-get install wrk)")
    return tracing.run(
        arguments.mysql_url,
        redis_url,
        runs=arguments.runs,
        seconds=arguments.seconds,
        connections=arguments.connections,
        receivers=arguments.receivers,
        rate=arguments.rate,
        messages=arguments.messages,
        baseline_rev=arguments.baseline_rev,
        log=log,
    )


def run_peers(arguments: argparse.Namespace, redis_url: str) -> list[Row]:
    rows = peers.run_rest(
        arguments.mysql_url,
        redis_url,
        servers=arguments.servers.split(","),
        runs=arguments.runs,
        seconds=arguments.seconds,
        smoke=arguments.smoke,
        log=log,
    )
    rows += server_layer.run(runs=arguments.runs, seconds=arguments.seconds, log=log)
    rows += peers.run_hooks(
        arguments.mysql_url,
        redis_url,
        rounds=1 if arguments.smoke else 41,
        requests=100 if arguments.smoke else 200,
        log=log,
    )
    rows += peers.run_log_writers(
        rounds=1 if arguments.smoke else 21, lines=100 if arguments.smoke else 500, log=log
    )
    rows += peers.run_websockets(
        arguments.mysql_url,
        redis_url,
        runs=arguments.runs,
        receivers=arguments.receivers,
        rate=arguments.rate,
        messages=arguments.messages,
        burst=arguments.burst,
        idle=int(arguments.idle.split(",")[0]),
        log=log,
    )
    return rows


def run_conditional(arguments: argparse.Namespace, redis_url: str) -> list[Row]:
    return conditional.run(
        arguments.mysql_url, redis_url, runs=arguments.runs, seconds=arguments.seconds, log=log
    )


SUITES = {
    "peers": run_peers,
    "conditional": run_conditional,
    "rest": run_rest,
    "fanout": run_fanout,
    "joins": run_joins,
    "idle": run_idle,
    "concurrency": run_concurrency,
    "tracing": run_tracing,
    "cluster": run_cluster,
}


def main(argv: list[str] | None = None) -> int:
    arguments = parse_arguments(argv)
    redis_url = arguments.redis_url
    Redis.from_url(redis_url).flushdb()
    started = time.monotonic()
    rows: list[Row] = []
    # A SIGTERM ends the run like Ctrl-C: the servers it started are stopped.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    if arguments.smoke:
        http_load.cap_answers_per_thread(SMOKE_ANSWERS_PER_THREAD)
    try:
        prepare_service(arguments.mysql_url, redis_url)
        for name in arguments.only.split(","):
            log(f"{name}:")
            suite_rows = SUITES[name](arguments, redis_url)
            log(render(suite_rows, title=f"{name} (so far)"))
            rows += suite_rows
    finally:
        Redis.from_url(redis_url).flushdb()
        drop_database(arguments.mysql_url)
    title = (
        f"python -m bench ({'smoke' if arguments.smoke else f'{arguments.runs} runs'}, "
        f"{time.monotonic() - started:.0f} s; load = 1-minute load average, 2 cores)"
    )
    print(render(rows, title=title))
    if arguments.json:
        with open(arguments.json, "w") as output:
            json.dump(
                [{**row.__dict__, "ratio": row.ratio, "met": row.met} for row in rows],
                output,
                indent=1,
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
