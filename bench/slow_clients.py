"""Clients that make a server wait, run beside a wrk load: slow uploads (the body one byte a
second), slowloris (the headers one byte a second) and idle keep-alive connections. Each
reconnects when the server lets it go, so the pressure lasts the whole scenario; each records
how the server let it go (a status code, or a close) and after how long.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
from dataclasses import dataclass, field

STATUS_LINE = re.compile(rb"^HTTP/1\.[01] (\d{3})")


@dataclass
class SlowOutcomes:
    """How the server let go of the slow sockets: per socket, its answer (a status code, or 0
    for a close without one) and the seconds from its connect to that answer or close."""

    answers: list[tuple[int, float]] = field(default_factory=list)
    # Seconds each socket the server still held at the end had been held.
    held: list[float] = field(default_factory=list)

    @property
    def still_open(self) -> int:
        return len(self.held)

    @property
    def slowest(self) -> float:
        """Seconds of the longest-held socket, let go or still held (0 if none)."""
        return (
            max((seconds for _, seconds in self.answers), default=0.0)
            if not self.held
            else (max(max(self.held), max((seconds for _, seconds in self.answers), default=0.0)))
        )

    def statuses(self) -> dict[int, int]:
        counts: dict[int, int] = {}
        for status, _ in self.answers:
            counts[status] = counts.get(status, 0) + 1
        return counts


async def _read_answer(reader: asyncio.StreamReader) -> int:
    """The status of the server's answer, or 0 if it closed without one."""
    with contextlib.suppress(ConnectionError, asyncio.IncompleteReadError):
        line = await reader.readline()
        match = STATUS_LINE.match(line)
        if match:
            return int(match.group(1))
    return 0


async def _trickle(
    host: str,
    port: int,
    head: bytes,
    trickled: bytes,
    until: float,
    out: SlowOutcomes,
    *,
    interval: float = 1.0,
) -> None:
    """Connect, send `head` at once and `trickled` one byte every `interval` seconds; when the
    server answers or closes, record it and start again, until the loop time `until`."""
    loop = asyncio.get_running_loop()
    while loop.time() < until:
        started = loop.time()
        try:
            reader, writer = await asyncio.open_connection(host, port)
        except OSError:
            out.answers.append((-1, loop.time() - started))
            await asyncio.sleep(interval)
            continue
        answer = asyncio.ensure_future(_read_answer(reader))
        try:
            if head:
                writer.write(head)
            for byte in trickled:
                if answer.done() or loop.time() >= until:
                    break
                writer.write(bytes([byte]))
                with contextlib.suppress(ConnectionError):
                    await writer.drain()
                await asyncio.wait({answer}, timeout=interval)
            await asyncio.wait({answer}, timeout=max(0.0, until - loop.time()))
            if answer.done():
                out.answers.append((answer.result(), loop.time() - started))
            else:
                out.held.append(loop.time() - started)
        finally:
            answer.cancel()
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()
        # At most one connection a socket per `interval`: an attacker's pace, not a busy loop.
        await asyncio.sleep(max(0.0, min(interval - (loop.time() - started), until - loop.time())))


async def slow_uploads(
    host: str, port: int, path: str, count: int, seconds: float, body_bytes: int = 200
) -> SlowOutcomes:
    """`count` sockets POSTing a JSON body of `body_bytes` (declared in Content-Length) one
    byte a second, for `seconds`."""
    head = (
        f"POST {path} HTTP/1.1\r\nHost: {host}:{port}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {body_bytes}\r\n\r\n"
    ).encode()
    body = b'{"name":"' + b"x" * (body_bytes - 11) + b'"}'
    out = SlowOutcomes()
    until = asyncio.get_running_loop().time() + seconds
    await asyncio.gather(*(_trickle(host, port, head, body, until, out) for _ in range(count)))
    return out


async def slowloris(host: str, port: int, count: int, seconds: float) -> SlowOutcomes:
    """`count` sockets sending a GET's request line and headers one byte a second, for
    `seconds` (reconnecting when closed)."""
    request = (
        f"GET /healthz HTTP/1.1\r\nHost: {host}:{port}\r\nUser-Agent: slowloris\r\n"
        + "".join(f"X-Padding-{n}: {'y' * 20}\r\n" for n in range(20))
        + "\r\n"
    ).encode()
    out = SlowOutcomes()
    until = asyncio.get_running_loop().time() + seconds
    await asyncio.gather(*(_trickle(host, port, b"", request, until, out) for _ in range(count)))
    return out


@dataclass
class IdleOutcome:
    connections: int  # connections opened, counting reconnects
    requests: int
    failed: int


async def idle_keepalive(
    host: str, port: int, path: str, count: int, seconds: float
) -> IdleOutcome:
    """`count` keep-alive connections, each sending one GET and then idling until the server
    closes it (its keep-alive timeout), then reconnecting, for `seconds`: a crowd of browsers
    that keep their connections open."""
    request = f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\n\r\n".encode()
    loop = asyncio.get_running_loop()
    until = loop.time() + seconds
    outcome = IdleOutcome(0, 0, 0)

    async def client() -> None:
        while loop.time() < until:
            try:
                reader, writer = await asyncio.open_connection(host, port)
            except OSError:
                outcome.failed += 1
                await asyncio.sleep(1)
                continue
            outcome.connections += 1
            try:
                writer.write(request)
                status = await asyncio.wait_for(_read_answer(reader), 30)
                outcome.requests += 1
                if status != 200:
                    outcome.failed += 1
                # Idle until the server closes the connection (or the scenario ends).
                with contextlib.suppress(ConnectionError, TimeoutError):
                    while await asyncio.wait_for(reader.read(65536), until - loop.time()):
                        pass
            except (OSError, TimeoutError):
                outcome.failed += 1
            finally:
                writer.close()

    # Opened over about a second, as a crowd arrives, not in one burst.
    async def staggered(index: int) -> None:
        await asyncio.sleep(index / count)
        await client()

    await asyncio.gather(*(staggered(i) for i in range(count)))
    return outcome
