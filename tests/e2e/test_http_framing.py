"""HTTP/1 framing as the third attack run found it, against a running service (Hypercorn, the
default server): leniencies RFC 9110/9112 refuse, bodies refused before they are sent, and
answers that reach a client still sending (lingering close)."""

from __future__ import annotations

import re
import socket
import threading
import time

import pytest

from tests.conftest import REDIS_URL
from tests.e2e.server import RunningServer, prepare_deployment, run_server
from tests.e2e.test_concurrency import address

ADMIN = ("framing-admin", "framing-admin-password")
STATUSES = re.compile(rb"^HTTP/1\.[01] (\d{3})", re.M)
pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    folder = tmp_path_factory.mktemp("framing")
    env = prepare_deployment(folder, "framing", ADMIN, REDIS_URL=REDIS_URL, API_AUTH="open")
    with run_server(folder, {**env, "HTTP_BODY_TIMEOUT": "5"}, workers=1) as running:
        yield running


def exchange(server: RunningServer, request: bytes, wait: float = 3) -> tuple[bytes, float]:
    """Send `request`; everything that came back until the server closed (or `wait` s of
    silence), and the seconds until the first bytes came."""
    with socket.create_connection(address(server), timeout=10) as sock:
        started = time.monotonic()
        sock.sendall(request)
        sock.settimeout(wait)
        received, first = b"", None
        try:
            while chunk := sock.recv(65536):
                first = first if first is not None else time.monotonic() - started
                received += chunk
        except TimeoutError:
            pass
        return received, first if first is not None else float("inf")


def statuses(received: bytes) -> list[int]:
    return [int(status) for status in STATUSES.findall(received)]


POST_HEAD = b"POST /api/v1/tag HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"


def test_a_chunk_size_past_64_bits_is_400_at_once(server) -> None:
    request = POST_HEAD + b"Transfer-Encoding: chunked\r\n\r\nffffffffffffffffff\r\nab"
    received, first = exchange(server, request)
    assert statuses(received) == [400] and first < 2, (received[:200], first)


def test_a_chunk_over_the_body_limit_is_413_at_once(server) -> None:
    request = POST_HEAD + b"Transfer-Encoding: chunked\r\n\r\n7fffffff\r\nab"
    received, first = exchange(server, request)
    assert statuses(received) == [413] and first < 2, (received[:200], first)


def test_a_lower_case_method_is_501_not_get(server) -> None:
    received, _ = exchange(server, b"get /api/v1/tag HTTP/1.1\r\nHost: x\r\n\r\n")
    assert statuses(received) == [501], received[:200]


def test_http_2_in_an_http_1_request_line_is_505(server) -> None:
    received, _ = exchange(server, b"GET /api/v1/tag HTTP/2.0\r\nHost: x\r\n\r\n")
    assert statuses(received) == [505], received[:200]


@pytest.mark.parametrize(
    "head",
    [
        b"GET /api/v1/tag HTTP/1.1\r\nHost: a b/c\r\n\r\n",
        b"GET /api/v1/tag HTTP/1.1\r\nHost: x\r\nHost: y\r\n\r\n",
        b"GET ftp://evil/api/v1/user HTTP/1.1\r\nHost: x\r\n\r\n",
    ],
    ids=["invalid-host", "two-hosts", "ftp-absolute-form"],
)
def test_a_target_or_host_rfc_9112_refuses_is_400(server, head) -> None:
    received, _ = exchange(server, head)
    assert statuses(received) == [400], received[:200]


def test_an_http_absolute_form_target_is_served(server) -> None:
    received, _ = exchange(
        server, b"GET http://x/api/v1/tag HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    )
    assert statuses(received) == [200], received[:200]


def test_pipelined_http_1_0_gets_its_first_answer(server) -> None:
    one = b"GET /api/v1/tag HTTP/1.0\r\nHost: x\r\nConnection: keep-alive\r\n\r\n"
    received, _ = exchange(server, one * 3)
    assert statuses(received)[:1] == [200], received[:300]
    assert 400 not in statuses(received)


def test_expect_100_continue_over_the_limit_gets_413_without_100(server) -> None:
    request = (
        POST_HEAD + b"Content-Length: 5000000\r\nExpect: 100-continue\r\n\r\n"
    )  # no body: a client waits for 100 before sending it
    received, first = exchange(server, request)
    assert statuses(received) == [413] and first < 2, received[:200]


def test_expect_100_continue_within_the_limit_gets_100_then_the_answer(server) -> None:
    body = b'{"name": "continued"}'
    with socket.create_connection(address(server), timeout=10) as sock:
        sock.sendall(
            POST_HEAD
            + b"Content-Length: %d\r\nExpect: 100-continue\r\nConnection: close\r\n\r\n" % len(body)
        )
        assert sock.recv(65536).startswith(b"HTTP/1.1 100 ")
        sock.sendall(body)
        received = b""
        while chunk := sock.recv(65536):
            received += chunk
    assert statuses(received) == [200], received[:200]


def send_until_answered(server: RunningServer, head: bytes, chunked: bool) -> bytes:
    """A client that sends `head` and then keeps sending body bytes until it sees an answer or
    the connection ends (as curl uploading a file does); what it read."""
    with socket.create_connection(address(server), timeout=10) as sock:
        sock.sendall(head)
        stop = threading.Event()

        def pump() -> None:
            piece = b"x" * 65536
            if chunked:
                piece = b"%x\r\n" % len(piece) + piece + b"\r\n"
            try:
                while not stop.is_set():
                    sock.sendall(piece)
            except OSError:
                pass

        sender = threading.Thread(target=pump, daemon=True)
        sender.start()
        received = b""
        sock.settimeout(10)
        try:
            while chunk := sock.recv(65536):
                received += chunk
        except OSError:
            pass
        stop.set()
        sender.join(5)
        return received


@pytest.mark.parametrize("chunked", [False, True], ids=["content-length", "chunked"])
def test_every_413_reaches_a_client_still_sending(server, chunked) -> None:
    """50 clients each send an upload over MAX_CONTENT_LENGTH (1 MiB) without waiting: each
    reads its 413 (before lingering close, a reset lost it for 4 to 10 clients of 50)."""
    framing = b"Transfer-Encoding: chunked\r\n" if chunked else b"Content-Length: 3000000\r\n"
    head = POST_HEAD + framing + b"\r\n"
    lost = 0
    for _ in range(50):
        lost += statuses(send_until_answered(server, head, chunked)) != [413]
    assert lost == 0, f"{lost} of 50 clients lost their answer"
