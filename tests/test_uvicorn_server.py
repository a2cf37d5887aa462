"""app/uvicorn_server.py's guard and what it changes in Uvicorn, shown against upstream: when an
upgrade changes what a change relies on, the e2e suite (tests/e2e/test_server_options.py) fails
on Uvicorn; when upstream gains it, the "upstream" case here fails, and the change can go."""

from __future__ import annotations

import socket
import subprocess
import sys
import time

import pytest

from app import overrides, uvicorn_server
from tests.e2e.server import PROJECT_ROOT, free_port
from tests.waiting import poll


def test_the_installed_versions_are_the_supported_ones() -> None:
    uvicorn_server.check_versions()


def test_an_unsupported_version_is_named(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(overrides, "version", lambda package: "9.9.9")
    with pytest.raises(uvicorn_server.UnsupportedUvicornVersion, match="uvicorn 9.9.9"):
        uvicorn_server.check_versions()


def test_upstream_uvicorn_keeps_a_silent_connection_past_any_header_timeout() -> None:
    """Stock Uvicorn (httptools) on a bare app: a connection that sends nothing is still open
    after 3 s (its keep-alive timer starts only after a response). The service's protocol
    closes it after HTTP_HEADER_TIMEOUT (tests/e2e/test_server_options.py)."""
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "uvicorn", "--http", "httptools", "--port", str(port),
         "--timeout-keep-alive", "1", "bench.apps.raw_asgi:app"],
        cwd=PROJECT_ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:

        def listening() -> bool:
            try:
                socket.create_connection(("127.0.0.1", port), 0.5).close()
            except OSError:
                return False
            return True

        poll(listening, 30)
        client = socket.create_connection(("127.0.0.1", port), 5)
        client.settimeout(3)
        started = time.monotonic()
        with pytest.raises(TimeoutError):
            client.recv(1)  # nothing, and no close, for 3 s
        assert time.monotonic() - started >= 2.9
        client.close()
    finally:
        process.terminate()
        process.wait(10)
