"""Websocket workloads: fan-out (steady and burst), joins to one room, idle memory.

Clients live in this process (asyncio `websockets`, no compression offered); timestamps go in
the frames, so latency is measured on one clock. Servers answer on the seed's relay protocol
(every text frame to every client: `/websocket` of the service, the two baselines) or on
`/ws/chat` (joins, idle memory).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import statistics
import time
from collections.abc import Awaitable
from dataclasses import dataclass, field
from typing import Protocol

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from bench.servers import Server

TRY_AGAIN_LATER = 1013


class Opener(Protocol):
    """Opens `count` clients of `url` (plain websockets, or bench/socketio_client.py's)."""

    def __call__(
        self, url: str, count: int, *, batch: int = ..., deflate: bool = ...
    ) -> Awaitable[list[ClientConnection]]: ...


async def open_clients(
    url: str, count: int, *, batch: int = 100, deflate: bool = False
) -> list[ClientConnection]:
    """`count` connections, `batch` handshakes at a time; offering permessage-deflate (as
    browsers do) when `deflate`."""
    clients: list[ClientConnection] = []
    while len(clients) < count:
        size = min(batch, count - len(clients))
        clients += await asyncio.gather(
            *(
                connect(
                    url,
                    compression="deflate" if deflate else None,
                    max_size=None,
                    max_queue=None,
                    open_timeout=120,
                    ping_interval=None,
                )
                for _ in range(size)
            )
        )
    return clients


async def close_clients(clients: list[ClientConnection]) -> None:
    for start in range(0, len(clients), 200):
        await asyncio.gather(
            *(client.close() for client in clients[start : start + 200]), return_exceptions=True
        )


@dataclass
class Deliveries:
    """What the receivers saw of one phase."""

    latencies: list[float] = field(default_factory=list)
    closed_1013: int = 0
    missing: int = 0

    def percentile(self, q: float) -> float:
        if not self.latencies:
            return float("nan")
        ordered = sorted(self.latencies)
        return ordered[min(len(ordered) - 1, max(0, round(q * len(ordered)) - 1))] * 1000

    @property
    def p50_ms(self) -> float:
        return statistics.median(self.latencies) * 1000 if self.latencies else float("nan")


async def _receive(
    client: ClientConnection, prefix: str, count: int, out: Deliveries, deadline: float
) -> None:
    got = 0
    try:
        while got < count:
            raw = await asyncio.wait_for(client.recv(), max(0.01, deadline - time.monotonic()))
            if isinstance(raw, str) and raw.startswith(prefix):
                out.latencies.append(time.perf_counter() - float(raw.split(" ", 2)[1]))
                got += 1
    except ConnectionClosed as closed:
        if closed.rcvd is not None and closed.rcvd.code == TRY_AGAIN_LATER:
            out.closed_1013 += 1
        out.missing += count - got
    except TimeoutError:
        out.missing += count - got


async def _phase(
    sender: ClientConnection,
    receivers: list[ClientConnection],
    prefix: str,
    messages: int,
    interval: float,
    time_limit: float,
) -> Deliveries:
    out = Deliveries()
    deadline = time.monotonic() + time_limit
    readers = [
        asyncio.create_task(_receive(client, prefix, messages, out, deadline))
        for client in receivers
    ]
    for number in range(messages):
        await sender.send(f"{prefix} {time.perf_counter()!r} {number}")
        if interval:
            await asyncio.sleep(interval)
    await asyncio.gather(*readers)
    return out


@dataclass
class FanoutResult:
    steady: Deliveries
    cpu_per_delivery_us: float
    burst: Deliveries


async def fanout(
    server: Server,
    path: str,
    *,
    receivers: int,
    rate: float,
    messages: int,
    burst: int,
    deflate: bool = False,
    opener: Opener | None = None,
) -> FanoutResult:
    """1 sender and `receivers` receivers on `path`: `messages` at `rate` per second (the
    server's CPU seconds per delivered message measured over them), then `burst` at once.
    `opener` opens the clients (default: plain websockets, `open_clients`)."""
    clients = await (opener or open_clients)(server.ws + path, receivers + 1, deflate=deflate)
    sender, receiving = clients[0], clients[1:]
    drain = asyncio.create_task(_drain(sender))
    try:
        # Every receiver is registered everywhere (both workers, the broker) before timing.
        await _phase(sender, receiving, "warm", 3, 0.05, 60)
        cpu_before = server.cpu_seconds()
        steady = await _phase(sender, receiving, "steady", messages, 1 / rate, 60 + messages)
        cpu = server.cpu_seconds() - cpu_before
        delivered = len(steady.latencies)
        burst_result = await _phase(sender, receiving, "burst", burst, 0, 60)
    finally:
        drain.cancel()
        await close_clients(clients)
    return FanoutResult(steady, cpu / max(delivered, 1) * 1e6, burst_result)


async def _drain(client: ClientConnection) -> None:
    with contextlib.suppress(ConnectionClosed):
        async for _ in client:
            pass


@dataclass
class JoinResult:
    seconds: float
    frames: int
    failed: int


async def joins(server: Server, count: int) -> JoinResult:
    """`count` clients (connected first) join one `/ws/chat` room at once: seconds until every
    one has its room's state and history, and the frames all of them received up to then and
    during the batching window after it."""
    clients = await open_clients(server.ws + "/ws/chat", count)
    frames = 0
    failed = 0

    async def join(index: int, client: ClientConnection) -> None:
        nonlocal frames, failed
        await client.send(json.dumps({"event": "join", "room": "bench", "nickname": f"n{index}"}))
        while True:
            frame = json.loads(await client.recv())
            frames += 1
            if frame["event"] == "history":
                return
            if frame["event"] == "error":
                failed += 1
                return

    async def count_rest(client: ClientConnection) -> None:
        nonlocal frames
        with contextlib.suppress(TimeoutError, ConnectionClosed):
            while True:
                await asyncio.wait_for(client.recv(), 1.0)
                frames += 1

    try:
        started = time.perf_counter()
        await asyncio.wait_for(
            asyncio.gather(*(join(i, client) for i, client in enumerate(clients))), 300
        )
        seconds = time.perf_counter() - started
        # Presence diffs still in flight (batched every 50 ms) count too: read until 1 s of quiet.
        await asyncio.gather(*(count_rest(client) for client in clients))
    finally:
        await close_clients(clients)
    return JoinResult(seconds, frames, failed)


async def idle_memory(
    server: Server, path: str, count: int, *, join: bool, opener: Opener | None = None
) -> tuple[float, int]:
    """Bytes of resident memory the server grows by per open (idle) connection, and how many
    joins were refused."""
    opener = opener or open_clients
    warm = await opener(server.ws + path, 50)
    await close_clients(warm)
    await asyncio.sleep(1)
    before = server.rss()
    clients = await opener(server.ws + path, count)
    try:
        if join:
            for index, client in enumerate(clients):
                await client.send(
                    json.dumps(
                        {"event": "join", "room": f"room{index % 50}", "nickname": f"n{index}"}
                    )
                )
            joined = await asyncio.gather(*(_until_history(client) for client in clients))
            refused = joined.count(False)
        else:
            refused = 0
        await asyncio.sleep(2)  # let allocations settle
        after = server.rss()
    finally:
        await close_clients(clients)
    return (after - before) / count, refused


async def _until_history(client: ClientConnection) -> bool:
    """Read until the join's `history` (True) or an error frame (False: e.g. the store was
    briefly unavailable under the flood of handshakes, and the join was refused)."""
    while True:
        event = json.loads(await asyncio.wait_for(client.recv(), 120))["event"]
        if event in ("history", "error"):
            return event == "history"


@dataclass
class ReconnectResult:
    seconds: float
    recovered: int
    failed: int


async def reconnects(server: Server, count: int, missed: int = 20) -> ReconnectResult:
    """`count` clients in one `/ws/chat` room lose their connections together (a deploy), the
    room gets `missed` messages meanwhile, and all reconnect at once, each rejoining from its
    last position: seconds from the first reconnect until every one has its `history` (and how
    many came back `recovered`)."""
    clients = await open_clients(server.ws + "/ws/chat", count)
    positions: list[dict[str, object]] = []
    try:
        sender = clients[0]
        for index, client in enumerate(clients):
            await client.send(
                json.dumps({"event": "join", "room": "reconnect", "nickname": f"r{index}"})
            )
        await asyncio.gather(*(_until_history(client) for client in clients))
        await sender.send(json.dumps({"event": "message", "room": "reconnect", "text": "seen"}))
        for client in clients:
            while True:
                frame = json.loads(await asyncio.wait_for(client.recv(), 60))
                if frame["event"] == "message":
                    positions.append({"epoch": frame["epoch"], "offset": frame["offset"]})
                    break
    finally:
        for client in clients:
            client.transport.abort()  # dropped, as by a deploy or a network change
    writer = (await open_clients(server.ws + "/ws/chat", 1))[0]
    await writer.send(json.dumps({"event": "join", "room": "reconnect", "nickname": "writer"}))
    await _until_history(writer)
    for number in range(missed):
        await writer.send(
            json.dumps({"event": "message", "room": "reconnect", "text": f"m{number}"})
        )
    recovered = failed = 0
    started = time.perf_counter()

    async def rejoin(index: int) -> bool:
        client = await connect(
            server.ws + "/ws/chat", compression=None, max_size=None, open_timeout=120,
            ping_interval=None,
        )  # fmt: skip
        reopened.append(client)
        await client.send(
            json.dumps(
                {
                    "event": "join",
                    "room": "reconnect",
                    "nickname": f"r{index}",
                    "since": positions[index],
                }
            )
        )
        while True:
            frame = json.loads(await asyncio.wait_for(client.recv(), 120))
            if frame["event"] == "history":
                return bool(frame["recovered"]) and len(frame["messages"]) == missed
            if frame["event"] == "error":
                return False

    reopened: list[ClientConnection] = []
    try:
        outcomes = await asyncio.gather(*(rejoin(i) for i in range(count)), return_exceptions=True)
        seconds = time.perf_counter() - started
        recovered = sum(outcome is True for outcome in outcomes)
        failed = count - recovered
    finally:
        await close_clients([*reopened, writer])
    return ReconnectResult(seconds, recovered, failed)
