"""bench/http_load.py's bound on answers (the smoke run's): each wrk thread stops after it,
whatever else its script counts."""

from __future__ import annotations

import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from bench import http_load


class Ok(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as the service's clients
    disable_nagle_algorithm = True  # else each answer waits out a delayed ACK (40 ms)

    def do_GET(self) -> None:
        self.send_response(200)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"ok")

    def log_message(self, format: str, *args: object) -> None:
        pass


class QuietServer(ThreadingHTTPServer):
    """A wrk thread that stops at its cap resets its connections: not an error of the test's
    (socketserver would print each one's traceback)."""

    def handle_error(self, request: object, client_address: object) -> None:
        if not isinstance(sys.exc_info()[1], ConnectionResetError):
            super().handle_error(request, client_address)  # type: ignore[arg-type]


@pytest.fixture
def url() -> Iterator[str]:
    server = QuietServer(("127.0.0.1", 0), Ok)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/"
    finally:
        server.shutdown()
        server.server_close()


@pytest.mark.parametrize("count_statuses", [False, True])
def test_each_thread_stops_after_the_cap(url: str, count_statuses: bool) -> None:
    http_load.cap_answers_per_thread(25)
    try:
        result = http_load.run(
            url, seconds=1, connections=2, threads=2, count_statuses=count_statuses
        )
    finally:
        http_load.cap_answers_per_thread(None)
    assert result.requests == 50, result
    if count_statuses:  # the status counter still sees every answer
        assert (result.ok, result.other) == (50, 0), result


def test_without_a_cap_the_load_runs_its_whole_time(url: str) -> None:
    result = http_load.run(url, seconds=1, connections=2, threads=2)
    assert result.requests > 50, result
