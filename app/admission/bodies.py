"""Stage 1 of admission (app.admission): a request that declares a body has it read in full
before it counts as work, bounded in time (`HTTP_BODY_TIMEOUT`: 408), in size
(`MAX_CONTENT_LENGTH`: 413, before reading when `Content-Length` says so) and per client
address (`HTTP_CLIENT_MAX_BODIES` arriving at once: 429). A client trickling its upload holds a
socket and a buffer, nothing else."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable
from typing import Any, Protocol

from app.error_bodies import BUSY_SECONDS
from app.metrics import HTTP_CLIENT_REFUSED

Scope = dict[str, Any]
Message = dict[str, Any]


class Answer(Protocol):
    """Answer the request with an error (app.admission's `_answer`, bound to its scope)."""

    def __call__(
        self,
        status: int,
        message: str,
        headers: list[tuple[bytes, bytes]] | None = None,
        *,
        close: bool = False,
    ) -> Awaitable[None]: ...


class BodyReader:
    """Reads request bodies within the bounds above.

    Arguments:
        body_timeout: seconds a body may take to arrive (`HTTP_BODY_TIMEOUT`).
        client_max_bodies: bodies one client address may have arriving at once
            (`HTTP_CLIENT_MAX_BODIES`).
        max_body_bytes: the largest body (`MAX_CONTENT_LENGTH`).
    """

    def __init__(self, *, body_timeout: float, client_max_bodies: int, max_body_bytes: int) -> None:
        self.body_timeout = body_timeout
        self.client_max_bodies = client_max_bodies
        self.max_body_bytes = max_body_bytes
        self.arriving: dict[str, int] = {}  # client address -> bodies arriving now

    async def read(self, scope: Scope, receive: Any, answer: Answer) -> Any:
        """Read the whole body within the bounds of stage 1. Returns a `receive` that replays
        it to the app, or None when the request was answered here (408, 413, 429) or its
        client left."""
        declared = _content_length(scope)
        if declared is not None and declared > self.max_body_bytes:
            HTTP_CLIENT_REFUSED.labels("body_too_large").inc()
            await answer(413, _too_large(self.max_body_bytes), close=True)
            return None
        client = scope["client"][0] if scope.get("client") else ""
        arriving = self.arriving.get(client, 0)
        if arriving >= self.client_max_bodies:
            HTTP_CLIENT_REFUSED.labels("client_bodies").inc()
            await answer(
                429,
                f"too many requests from this address are still sending their body "
                f"(at most {self.client_max_bodies} at once)",
                [(b"retry-after", str(BUSY_SECONDS).encode())],
                close=True,
            )
            return None
        self.arriving[client] = arriving + 1
        chunks: list[bytes] = []
        size = 0
        try:
            async with asyncio.timeout(self.body_timeout):
                while True:
                    message = await receive()
                    if message["type"] != "http.request":
                        return None  # the client left: nobody to answer
                    chunk = message.get("body", b"")
                    size += len(chunk)
                    if size > self.max_body_bytes:
                        HTTP_CLIENT_REFUSED.labels("body_too_large").inc()
                        await answer(413, _too_large(self.max_body_bytes), close=True)
                        return None
                    if chunk:
                        chunks.append(chunk)
                    if not message.get("more_body", False):
                        break
        except TimeoutError:
            HTTP_CLIENT_REFUSED.labels("body_timeout").inc()
            await answer(
                408,
                f"the request body did not arrive within {self.body_timeout:g} s",
                close=True,
            )
            return None
        finally:
            left = self.arriving[client] - 1
            if left:
                self.arriving[client] = left
            else:
                del self.arriving[client]
        return _replay(b"".join(chunks), receive)


def _replay(body: bytes, receive: Any) -> Any:
    """A `receive` whose first message is the whole `body`; later calls wait on the server's
    (for `http.disconnect`)."""
    delivered = False

    async def replay() -> Message:
        nonlocal delivered
        if not delivered:
            delivered = True
            return {"type": "http.request", "body": body, "more_body": False}
        message: Message = await receive()
        return message

    return replay


def _content_length(scope: Scope) -> int | None:
    for name, value in scope["headers"]:
        if name == b"content-length":
            with contextlib.suppress(ValueError):
                return int(value)
    return None


def _too_large(limit: int) -> str:
    return f"the request body is larger than {limit} bytes"
