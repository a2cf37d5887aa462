"""The second attack run, replayed: request-smuggling shapes (ambiguous framing) are 400 and
close the connection."""

from __future__ import annotations

import re
import socket

import pytest

from tests.e2e.server import RunningServer

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def server(hardening_server):
    return hardening_server


# 5: smuggling shapes ---------------------------------------------------------------------


def raw_exchange(server: RunningServer, request: bytes) -> tuple[bytes, bool]:
    """Send `request` on one connection: what came back, and whether the server closed it."""
    host, port = server.base_url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=5) as sock:
        sock.sendall(request)
        received = b""
        sock.settimeout(3)
        try:
            while chunk := sock.recv(65536):
                received += chunk
        except TimeoutError:
            return received, False
        return received, True


SMUGGLED_GET = b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"


@pytest.mark.parametrize(
    "framing",
    [
        b"Content-Length: 4\r\nTransfer-Encoding: chunked\r\n",
        b"Transfer-Encoding: chunked\r\nContent-Length: 4\r\n",
        b"Transfer-Encoding: gzip\r\n",
        b"Transfer-Encoding: gzip, chunked\r\n",
    ],
)
def test_ambiguous_framing_is_400_and_the_connection_closes(server, framing) -> None:
    request = (
        b"POST /api/v1/tag HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        + framing
        + b"\r\n0\r\n\r\n"
        + SMUGGLED_GET
    )
    received, closed = raw_exchange(server, request)
    statuses = re.findall(rb"^HTTP/1\.1 (\d{3})", received, re.M)
    assert statuses == [b"400"], received  # the smuggled GET is never answered
    assert closed
