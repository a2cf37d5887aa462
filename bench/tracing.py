"""The cost of tracing (docs/observability in docs/operations.md): the service with tracing
off, and on with 10% sampling exporting to an OTLP/HTTP sink (bench/apps/otlp_sink.py),
interleaved in each round: `GET user` under wrk, and the fan-out 1 -> N on `/websocket`.
With `--baseline-rev REV`, the service as it was at REV (a `git archive` of it, run in place of
this checkout's `app`) joins each round, so "off" is also measured against the code before it.
"""

from __future__ import annotations

import asyncio
import contextlib
import statistics
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

from bench import http_load, rest, websocket_load
from bench.report import Row, load_average
from bench.servers import (
    Server,
    _run,
    free_port,
    prepare_service,
    service,
    service_env,
    wait_for_port,
)

ROOT = Path(__file__).resolve().parents[1]
SAMPLED = "0.1"


@contextlib.contextmanager
def otlp_sink() -> Iterator[str]:
    port = free_port()
    process = subprocess.Popen([sys.executable, "-m", "bench.apps.otlp_sink", str(port)], cwd=ROOT)
    try:
        wait_for_port(port, process)  # type: ignore[arg-type]
        yield f"http://127.0.0.1:{port}"
    finally:
        process.terminate()
        process.wait(10)


@contextlib.contextmanager
def source_at(revision: str) -> Iterator[Path]:
    """The project's files at `revision`, in a temporary folder."""
    with tempfile.TemporaryDirectory(prefix="qf-bench-rev-") as folder:
        archive = subprocess.run(
            ["git", "-C", str(ROOT), "archive", revision], check=True, capture_output=True
        )
        subprocess.run(["tar", "-x", "-C", folder], input=archive.stdout, check=True)
        yield Path(folder)


@contextlib.contextmanager
def service_from(source: Path, database_url: str, redis_url: str) -> Iterator[Server]:
    """`python -m app serve` of the code in `source` (first on the module path), 2 workers."""
    port = free_port()
    env = {**service_env(port, database_url, redis_url, 2), "PYTHONPATH": str(source)}
    with _run(
        "service at baseline",
        [sys.executable, "-m", "app", "serve"],
        port,
        env=env,
        workdir=Path(tempfile.mkdtemp(prefix="qf-bench-")),
        ready_workers=2,
    ) as server:
        yield server


def run(
    database_url: str,
    redis_url: str,
    *,
    runs: int,
    seconds: float,
    connections: int,
    receivers: int,
    rate: float,
    messages: int,
    baseline_rev: str | None,
    log: Callable[[str], None],
) -> list[Row]:
    prepare_service(database_url, redis_url)
    user_id = rest.seed_service(database_url)
    requests: dict[str, list[float]] = {}
    cpu: dict[str, list[float]] = {}
    p50: dict[str, list[float]] = {}
    loads: list[float] = []
    with contextlib.ExitStack() as stack:
        sink = stack.enter_context(otlp_sink())
        variants: dict[str, Callable[[], contextlib.AbstractContextManager[Server]]] = {
            "off": lambda: service(database_url, redis_url),
            "on": lambda: service(
                database_url,
                redis_url,
                OTEL_EXPORTER_OTLP_ENDPOINT=sink,
                OTEL_TRACES_SAMPLER="parentbased_traceidratio",
                OTEL_TRACES_SAMPLER_ARG=SAMPLED,
            ),
        }
        if baseline_rev:
            source = stack.enter_context(source_at(baseline_rev))
            variants["before"] = lambda: service_from(source, database_url, redis_url)
        for round_number in range(runs):
            for name, start in variants.items():
                with start() as server:
                    url = f"{server.http}/api/v1/user/{user_id}"
                    http_load.run(url, seconds=1, connections=4)  # warm-up
                    load = http_load.run(url, seconds=seconds, connections=connections)
                    fanout = asyncio.run(
                        websocket_load.fanout(
                            server,
                            "/websocket",
                            receivers=receivers,
                            rate=rate,
                            messages=messages,
                            burst=10,
                        )
                    )
                requests.setdefault(name, []).append(load.requests_per_second)
                cpu.setdefault(name, []).append(fanout.cpu_per_delivery_us)
                p50.setdefault(name, []).append(fanout.steady.p50_ms)
                loads.append(load_average())
                log(
                    f"  tracing round {round_number + 1}/{runs} {name:6s} GET user "
                    f"{load.requests_per_second:8.1f} req/s p99 {load.p99_ms:6.1f} ms  fan-out "
                    f"cpu/delivery {fanout.cpu_per_delivery_us:6.1f} us p50 "
                    f"{fanout.steady.p50_ms:6.2f} ms"
                )
    load = statistics.median(loads)

    def med(values: dict[str, list[float]], name: str) -> float:
        return statistics.median(values[name])

    shape = f"fan-out 1 -> {receivers}"
    rows = [
        Row(
            "GET user, tracing on (10% sampled)",
            med(requests, "on"),
            "req/s",
            "tracing off",
            med(requests, "off"),
            ">= 0.85",
            load,
        ),
        Row(
            f"{shape} CPU per delivery, tracing on (10% sampled)",
            med(cpu, "on"),
            "us",
            "tracing off",
            med(cpu, "off"),
            "<= 1.18",  # 1 / 0.85: the delivery rate a core gives is >= 0.85 of off's
            load,
        ),
        Row(
            f"{shape} p50, tracing on (10% sampled)",
            med(p50, "on"),
            "ms",
            "tracing off",
            med(p50, "off"),
            "",
            load,
        ),
    ]
    if baseline_rev:
        rows += [
            Row(
                "GET user, tracing off",
                med(requests, "off"),
                "req/s",
                f"before tracing ({baseline_rev})",
                med(requests, "before"),
                ">= 0.98",
                load,
            ),
            Row(
                f"{shape} CPU per delivery, tracing off",
                med(cpu, "off"),
                "us",
                f"before tracing ({baseline_rev})",
                med(cpu, "before"),
                "<= 1.02",
                load,
            ),
        ]
    return rows
