"""A dead or hung OTLP collector must not stall a deploy (issue 32): with thousands of spans
waiting for a collector that never answers, or refuses, SIGTERM still ends the service within
`graceful_timeout` (8 s) + 1 s, and one line counts the spans dropped."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator
from contextlib import contextmanager

import pytest

from bench import http_load
from tests.conftest import REDIS_URL
from tests.e2e.server import free_port, prepare_deployment, run_server

pytestmark = pytest.mark.e2e

GRACEFUL_TIMEOUT = 8  # hypercorn.toml


@contextmanager
def hung_collector() -> Iterator[str]:
    """A port whose connections the kernel accepts and nobody ever reads or answers."""
    listening = socket.socket()
    listening.bind(("127.0.0.1", 0))
    listening.listen(1024)
    try:
        yield f"http://127.0.0.1:{listening.getsockname()[1]}"
    finally:
        listening.close()


@contextmanager
def refusing_collector() -> Iterator[str]:
    yield f"http://127.0.0.1:{free_port()}"  # nothing listens: connections are refused


@pytest.mark.parametrize(
    "collector", [hung_collector, refusing_collector], ids=["hung", "refusing"]
)
def test_sigterm_ends_within_the_graceful_timeout_whatever_the_collector_does(
    tmp_path, collector
) -> None:
    env = prepare_deployment(
        tmp_path, "trace_shutdown", ("root", "trace-shutdown-pw"), REDIS_URL=REDIS_URL
    )
    with collector() as endpoint:
        env = {**env, "OTEL_EXPORTER_OTLP_ENDPOINT": endpoint}
        with run_server(tmp_path, env, workers=2) as server:
            # Thousands of spans wait for the collector: load until 1,000 requests were
            # answered, however busy the machine (the suite's other workers share it).
            answered, deadline = 0, time.monotonic() + 120
            while answered < 1000:
                assert time.monotonic() < deadline, answered
                answered += http_load.run(
                    f"{server.base_url}/api/v1/tag", seconds=2, connections=16
                ).requests
            started = time.monotonic()
            code = server.stop(timeout=30)
            took = time.monotonic() - started
            log = server.log()
    assert code == 0, log[-3000:]
    assert took <= GRACEFUL_TIMEOUT + 1, took
    assert "spans dropped at shutdown" in log, log[-3000:]
    assert "LifespanTimeoutError" not in log and "Traceback" not in log, log[-3000:]
