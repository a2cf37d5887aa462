"""The hub: this worker's connections, and fan-out of messages from any worker to them.

Every message goes through the broker as `{"to": <target>, "frame": <frame>, "skip": conn?}`
(app.realtime.messages.BrokerMessage, with an optional `intercept`: the outgoing filter each
receiver's copy goes through); each worker's hub delivers it to its own connections that
match the target. A message from a worker that sets no `intercept` (one older than the
filters, during a rolling deploy) is delivered unchanged: a joiner may then see its own join
in a presence diff. Delivery never
waits for a client: frames go into each connection's bounded queue (see `connection`). Rooms
(join, leave, history, presence) are the room service's (app.realtime.room_service), which
tells the hub which of its connections are in which room; as Centrifuge's Hub and Node.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections import defaultdict
from collections.abc import Callable, Iterable
from typing import Any

from prometheus_client import Counter

from app.metrics import WEBSOCKET_MESSAGES
from app.presence import PresenceRecorder
from app.realtime.broker import Broker
from app.realtime.connection import Connection, encode, text_frame
from app.realtime.messages import Audience, BrokerMessage
from app.tracing import delivery_span, publish_span

log = logging.getLogger(__name__)


DRAIN_SECONDS = 5.0

# An outgoing filter: the copy of a frame one receiver gets, or None for none (Phoenix's
# `handle_out`). It returns the frame itself when the receiver gets it unchanged.
OutgoingFilter = Callable[[dict[str, Any], Connection], dict[str, Any] | None]


class Hub:
    """This worker's websocket connections, and its local fan-out.

    Arguments:
        broker: carries messages to every worker.
        presence: marks authenticated connections online when they connect (the room
            service's heartbeat marks them again).
    """

    def __init__(self, broker: Broker, presence: PresenceRecorder) -> None:
        self.broker = broker
        self.presence = presence
        self.worker = f"{os.getpid()}"
        self.connections: dict[str, Connection] = {}
        self.by_endpoint: dict[str, set[Connection]] = defaultdict(set)
        self.rooms: dict[str, set[Connection]] = defaultdict(set)
        self._empty = asyncio.Event()
        self._empty.set()
        self._closing: tuple[int, str] | None = None  # set by close_all: the worker is going
        self._frames_out: dict[str, Counter] = {}
        # Per room: the log position (epoch, offset) of the last message this worker delivered.
        self.positions: dict[str, tuple[str, int]] = {}
        # Outgoing filters by name, for messages published with `intercept` (the room service
        # adds its own); a name this worker does not know delivers the frame unchanged.
        self.intercepts: dict[str, OutgoingFilter] = {}

    async def start(self) -> None:
        await self.broker.start(self.deliver)

    async def close_broker(self) -> None:
        """Stop the broker's subscription (after `close_all`: app.realtime.room_service)."""
        await self.broker.close()

    async def close_all(self, code: int, reason: str) -> None:
        """Close every connection of this worker with `code`, and wait (bounded) until they are
        gone. A connection that registers from then on (a client reconnecting at once to a
        worker that is draining) is closed the same way as it opens."""
        self._closing = (code, reason)
        for connection in list(self.connections.values()):
            connection.close(code, reason)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._empty.wait(), DRAIN_SECONDS)

    # Registration ---------------------------------------------------------------------------

    async def register(self, connection: Connection) -> None:
        self.connections[connection.id] = connection
        self.by_endpoint[connection.endpoint].add(connection)
        self._empty.clear()
        if self._closing is not None:
            connection.close(*self._closing)
        if connection.user_id is not None:
            await self.presence.mark(connection.user_id)

    def unregister(self, connection: Connection) -> None:
        """Forget the connection (the room service has taken it out of its rooms)."""
        self.connections.pop(connection.id, None)
        self.by_endpoint[connection.endpoint].discard(connection)
        if not self.connections:
            self._empty.set()

    def add_to_room(self, connection: Connection, room: str) -> None:
        """Deliver `room`'s traffic to `connection` from now on, held until it is welcomed
        (`Connection.enter_room`)."""
        connection.enter_room(room)
        self.rooms[room].add(connection)

    def remove_from_room(self, connection: Connection, room: str) -> None:
        connection.leave_room(room)
        members = self.rooms.get(room)
        if members is not None:
            members.discard(connection)
            if not members:
                del self.rooms[room]

    # Fan-out --------------------------------------------------------------------------------

    async def publish(
        self,
        to: Audience,
        frame: dict[str, Any] | str,
        skip: str | None = None,
        *,
        intercept: str | None = None,
    ) -> None:
        """Deliver `frame` to the connections matching `to`, on every worker; with `intercept`,
        each receiver gets what that outgoing filter (`intercepts`) makes of it. Raises the
        broker's error (`redis.exceptions.RedisError`) when it cannot take the message."""
        message: BrokerMessage = {"to": to, "frame": frame, "skip": skip}
        if intercept is not None:
            message["intercept"] = intercept
        with publish_span(destination(to)) as trace:
            if trace is not None:
                message["trace"] = trace
            await self.broker.publish(message)

    def deliver(self, message: BrokerMessage) -> None:
        """Hand a broker message to this worker's matching connections (never blocks); a
        traced message's delivery is a span (app.tracing)."""
        if "trace" not in message:
            self._deliver(message)
            return
        with delivery_span(message, destination(message["to"]), self.worker) as span:
            sent = self._deliver(message)
            if span is not None:
                span.set_attribute("messaging.batch.message_count", sent)

    def _deliver(self, message: BrokerMessage) -> int:
        """Queue `message` to the matching connections; returns how many took it now."""
        to, skip, frame = message["to"], message.get("skip"), message["frame"]
        targets = [c for c in self._targets(to) if c.id != skip]
        room = to["room"] if to["kind"] != "endpoint" and "room" in to else None
        outgoing = self.intercepts.get(message.get("intercept", ""))
        if outgoing is not None and isinstance(frame, dict):
            sent = self._deliver_filtered(targets, frame, outgoing, room)
        else:
            position = log_position(frame) if room is not None else None
            if position is not None and room is not None:
                self.positions[room] = position
            # Encoded and framed once per message, not once per receiver.
            text = encode(frame)
            wire_frame = text_frame(text)
            sent = sum(connection.offer(room, text, wire_frame, position) for connection in targets)
        if sent:
            self._count_out(to, sent)
        return sent

    def _count_out(self, to: Audience, frames: int) -> None:
        endpoint = to.get("endpoint", "chat") if to["kind"] != "room" else "chat"
        counter = self._frames_out.get(endpoint)
        if counter is None:
            counter = self._frames_out[endpoint] = WEBSOCKET_MESSAGES.labels(endpoint, "out")
        counter.inc(frames)

    @staticmethod
    def _deliver_filtered(
        targets: list[Connection],
        frame: dict[str, Any],
        outgoing: OutgoingFilter,
        room: str | None,
    ) -> int:
        """Each receiver's copy of `frame` through `outgoing`; the unchanged frame is encoded
        once. Returns how many were queued."""
        text = encode(frame)
        wire_frame = text_frame(text)
        sent = 0
        for connection in targets:
            copy = outgoing(frame, connection)
            if copy is frame:
                sent += connection.offer(room, text, wire_frame)
            elif copy is not None:
                sent += connection.offer(room, encode(copy))
        return sent

    def _targets(self, to: Audience) -> list[Connection]:
        if to["kind"] == "endpoint":
            return list(self.by_endpoint.get(to["endpoint"], ()))
        if to["kind"] == "room":
            return list(self.rooms.get(to["room"], ()))
        if to["kind"] == "names":
            names = set(to["names"])
            if "room" in to:
                pool: Iterable[Connection] = self.rooms.get(to["room"], ())
            else:
                pool = self.by_endpoint.get(to.get("endpoint", ""), ())
            return [c for c in pool if c.name in names]
        return []


def destination(to: Audience) -> str:
    """An audience as a messaging destination name: "room/<name>" or "endpoint/<name>"."""
    room = to.get("room")
    return f"room/{room}" if room is not None else f"endpoint/{to.get('endpoint', '')}"


def log_position(frame: dict[str, Any] | str) -> tuple[str, int] | None:
    """The (epoch, offset) of a room log message, else None."""
    if isinstance(frame, dict):
        offset = frame.get("offset")
        if isinstance(offset, int):
            return str(frame.get("epoch", "")), offset
    return None
