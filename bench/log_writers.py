"""The access log line, written three ways: what one line costs (issue 30: "the bench can weigh
a structured logger against the stdlib `logging` path").

- **the service's writer** (app.request_log.AccessLog): the line formatted by hand and
  written to the log handler's stream, the lines of one event-loop turn in one write;
- **stdlib logging**: `logging.getLogger("app.access").info(...)` through the service's own
  handler and formatter (app.request_log.configure_logging: a record, the handler's lock, the
  formatter, a write and a flush per line);
- **structlog** (26.x), configured as its performance guide advises: a filtering bound logger,
  the logger cached on first use, plain dicts, its output logger writing straight to the file
  (no stdlib logging), the JSON rendered by orjson; for text lines, its key=value renderer.

Each writes the same fields (method, path, status, duration, request id, client) to a file of
its own, one line per event-loop turn (a turn that ends one request, the worst case for the
service's per-turn batching), in text and in JSON lines (`LOG_FORMAT=json`). A figure is the
CPU time per line: the median of `rounds` blocks of `lines` lines (in a shuffled order in each
round), less the same for a writer that writes nothing (the loop turn itself).

Run as `python -m bench.log_writers ROUNDS LINES` (the peers suite does, in a process of its
own); prints one JSON object: {"<writer>, <format>": microseconds per line}.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import random
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from typing import Any

LINE = ("GET", "/api/v1/user/01a24ce3-8397-72c5-a9ac-7723ba562d61", 200, 0.0021, "0" * 32)
CLIENT = "127.0.0.1"

Writer = Callable[[], None]
NOTHING = "nothing"


def _settings(json_lines: bool) -> Any:
    from app.settings import Settings

    # Only the log's settings matter here; the environment's APP_ENV (and its secret-key rule)
    # does not.
    return Settings(
        app_env="development", log_level="INFO", log_format="json" if json_lines else "text"
    )


def _service_writer(json_lines: bool, stream: Any) -> Writer:
    from app.request_log import AccessLog, configure_logging

    handler = configure_logging(_settings(json_lines))
    handler.setStream(stream)
    access_log = AccessLog(handler, json_lines=json_lines)
    method, path, status, seconds, request_id = LINE
    return lambda: access_log.write(method, path, status, seconds, request_id, CLIENT)


def _stdlib_writer(json_lines: bool, stream: Any) -> Writer:
    from app.request_log import configure_logging

    handler = configure_logging(_settings(json_lines))
    handler.setStream(stream)
    logger = logging.getLogger("app.access")
    method, path, status, seconds, request_id = LINE
    # The JSON formatter takes the fields from the record's extras; text lines have none.
    extra = (
        {
            "method": method,
            "path": path,
            "status": status,
            "duration_ms": round(seconds * 1000, 2),
            "request_id": request_id,
            "client": CLIENT,
        }
        if json_lines
        else None
    )
    return lambda: logger.info(
        "%s %s %d %.1fms id=%s client=%s",
        method,
        path,
        status,
        seconds * 1000,
        request_id,
        CLIENT,
        extra=extra,
    )


def _structlog_writer(json_lines: bool, stream: Any) -> Writer:
    import orjson
    import structlog

    renderer: Any
    if json_lines:
        renderer = structlog.processors.JSONRenderer(serializer=orjson.dumps)
        factory: Any = structlog.BytesLoggerFactory(stream.buffer)
    else:
        renderer = structlog.processors.KeyValueRenderer(sort_keys=False)
        factory = structlog.WriteLoggerFactory(stream)
    structlog.configure(
        processors=[
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="%Y-%m-%d %H:%M:%S", utc=False),
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(logging.INFO),
        context_class=dict,
        logger_factory=factory,
        cache_logger_on_first_use=True,
    )
    logger = structlog.get_logger("app.access")
    method, path, status, seconds, request_id = LINE

    def write() -> None:
        logger.info(
            "request",
            method=method,
            path=path,
            status=status,
            duration_ms=round(seconds * 1000, 2),
            request_id=request_id,
            client=CLIENT,
            process=os.getpid(),
        )

    return write


WRITERS: dict[str, Callable[[bool, Any], Writer]] = {
    "the service's writer": _service_writer,
    "stdlib logging": _stdlib_writer,
    "structlog": _structlog_writer,
}


def open_writers(folder: str) -> tuple[dict[str, Callable[[], Writer]], list[Any]]:
    """Each writer and format, as a function configuring it on a file of its own in `folder`
    (configure_logging and structlog.configure are global: redone before each block); and the
    files, to close."""
    streams: list[Any] = []
    writers: dict[str, Callable[[], Writer]] = {}
    for json_lines in (False, True):
        for name, make in WRITERS.items():
            key = f"{name}, {'JSON lines' if json_lines else 'text'}"
            stream = open(  # noqa: SIM115  # closed by main()
                os.path.join(folder, f"{len(streams)}.log"), "w", encoding="utf-8"
            )
            streams.append(stream)
            writers[key] = _bound(make, json_lines, stream)
    return writers, streams


async def measure(
    writers: dict[str, Callable[[], Writer]], rounds: int, lines: int
) -> dict[str, float]:
    async def block(write: Writer) -> float:
        started = time.process_time()
        for _ in range(lines):
            write()
            await asyncio.sleep(0)  # the loop turn ends: the service's writer flushes
        return (time.process_time() - started) / lines * 1e6

    writers = {**writers, NOTHING: lambda: lambda: None}  # the loop turn alone, subtracted
    samples: dict[str, list[float]] = {key: [] for key in writers}
    order = list(writers)
    shuffle = random.Random(30)
    for key in order:  # warm each path once
        await block(writers[key]())
    for _ in range(rounds):
        shuffle.shuffle(order)
        for key in order:
            samples[key].append(await block(writers[key]()))
    turn = statistics.median(samples.pop(NOTHING))
    return {key: statistics.median(values) - turn for key, values in samples.items()}


def _bound(
    make: Callable[[bool, Any], Writer], json_lines: bool, stream: Any
) -> Callable[[], Writer]:
    return lambda: make(json_lines, stream)


def main() -> None:
    rounds, lines = (int(value) for value in sys.argv[1:3])
    with tempfile.TemporaryDirectory(prefix="bench-log-writers-") as folder:
        writers, streams = open_writers(folder)
        try:
            costs = asyncio.run(measure(writers, rounds, lines))
        finally:
            for stream in streams:
                stream.close()
        for key, stream in zip(writers, streams, strict=True):
            with open(stream.name, encoding="utf-8") as written:
                count = sum(1 for line in written if LINE[1] in line)
            if count < rounds * lines:
                raise SystemExit(f"{key}: {count} access lines written, {rounds * lines} expected")
    print(json.dumps(costs))


if __name__ == "__main__":
    main()
