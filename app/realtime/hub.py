"""The hub: this worker's connections, and fan-out of messages from any worker to them.

Every message goes through the broker as `{"to": <target>, "frame": <frame>, "skip": conn?}`;
each worker's hub delivers it to its own connections that match the target. Delivery never
waits for a client: frames go into each connection's bounded queue (see `connection`).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import os
from collections import defaultdict
from collections.abc import Awaitable, Callable, Iterable, Sequence
from typing import Any, TypedDict

from prometheus_client import Counter
from redis.exceptions import RedisError

from app.batching import BatchedLookup
from app.cancellation import raise_if_stopping
from app.metrics import CHAT_ROOM_MESSAGES, WEBSOCKET_MESSAGES
from app.names import skeleton
from app.presence import PresenceRecorder
from app.realtime.broker import Broker
from app.realtime.connection import GOING_AWAY, Connection, encode, text_frame
from app.realtime.messages import Audience, BrokerMessage
from app.realtime.rooms import (
    LogRead,
    MemberRecord,
    Position,
    Published,
    RoomDirectory,
    member_record,
)
from app.tracing import delivery_span, publish_span

log = logging.getLogger(__name__)


NICKNAME_ROOM = "~nickname-chat"  # the seed endpoint's members; chat rooms cannot start with "~"
DRAIN_SECONDS = 5.0
PRESENCE_BATCH_SECONDS = 0.2
JOIN_CONCURRENCY = 16  # joins of this worker in progress at once (app.realtime.chat.room_chat)


class PresenceBatch:
    """A room's joins and leaves held back for one batching window, kept as their net effect:
    a name that leaves and comes back within the window is no change, and so is one that
    comes and goes."""

    def __init__(self) -> None:
        self.joins: dict[str, dict[str, Any]] = {}
        self.leaves: dict[str, dict[str, Any]] = {}

    def add(self, joined: dict[str, Any] | None, left: dict[str, Any] | None) -> None:
        if joined is not None and self.leaves.pop(joined["name"], None) is None:
            self.joins[joined["name"]] = joined
        if left is not None and self.joins.pop(left["name"], None) is None:
            self.leaves[left["name"]] = left


class PresenceEntry(TypedDict):
    name: str
    user_id: str | None


TakenNames = Callable[[list[str]], Awaitable[dict[str, bool]]]


async def no_account_names(skeletons: list[str]) -> dict[str, bool]:
    return {}


class Hub:
    """This worker's websocket connections.

    Arguments:
        broker: carries messages to every worker.
        directory: room membership and history shared by every worker.
        presence: marks authenticated connections online (on connect and every heartbeat).
        heartbeat_seconds: how often this worker refreshes its room members and presence.
        taken_names: which of some name skeletons (app.names) belong to accounts
            (`{skeleton: True}`); a burst of joins asks it once per loop turn.
    """

    def __init__(
        self,
        broker: Broker,
        directory: RoomDirectory,
        presence: PresenceRecorder,
        *,
        heartbeat_seconds: float,
        taken_names: TakenNames = no_account_names,
    ) -> None:
        self.broker = broker
        self.directory = directory
        self.presence = presence
        self.heartbeat_seconds = heartbeat_seconds
        self.worker = f"{os.getpid()}"
        self.connections: dict[str, Connection] = {}
        self.by_endpoint: dict[str, set[Connection]] = defaultdict(set)
        self.rooms: dict[str, set[Connection]] = defaultdict(set)
        self.join_slots = asyncio.Semaphore(JOIN_CONCURRENCY)
        self._presence: dict[str, PresenceBatch] = {}
        self._presence_tasks: set[asyncio.Task[None]] = set()
        self._heartbeat: asyncio.Task[None] | None = None
        self._empty = asyncio.Event()
        self._empty.set()
        self._closing: tuple[int, str] | None = None  # set by close_all: the worker is going
        self._frames_out: dict[str, Counter] = {}
        # Per room: the log position (epoch, offset) of the last message this worker delivered.
        self.positions: dict[str, tuple[str, int]] = {}
        self._account_names = BatchedLookup(taken_names, False)
        # The presence entries of the last member sequence (`presence_entries`).
        self._last_members: Sequence[MemberRecord] | None = None
        self._last_entries: list[PresenceEntry] = []

    async def is_account_name(self, nickname: str) -> bool:
        """Whether `nickname` is, or looks like, an account's name (app.names). Raises the
        database's errors."""
        return await self._account_names.get(skeleton(nickname))

    def presence_entries(self, members: Sequence[MemberRecord]) -> list[PresenceEntry]:
        """One entry per name (a user may be connected several times), sorted by name. The
        entries of the last member sequence are kept: joins that share one read of the room
        (RedisRoomDirectory.members) share this work too."""
        if self._last_members is members:
            return self._last_entries
        seen: dict[str, PresenceEntry] = {}
        for member in members:
            if member["name"] not in seen:
                seen[member["name"]] = {"name": member["name"], "user_id": member["user_id"]}
        entries = [seen[name] for name in sorted(seen)]
        self._last_members, self._last_entries = members, entries
        return entries

    async def start(self) -> None:
        await self.broker.start(self.deliver)
        self._heartbeat = asyncio.create_task(self._beat(), name="hub-heartbeat")

    async def catch_up(self) -> None:
        """After the broker (re)subscribed: send this worker's connections what their rooms'
        logs got while it was not listening (each connection takes only what is new to it,
        `Connection.admit`). Runs before the subscription's first message is read, so what
        comes live follows in order. Where the log no longer holds everything missed, the
        room's connections get `history` with `recovered: false`, as a rejoining client would."""
        for room in list(self.rooms):
            known = self.positions.get(room)
            read = await self.directory.read_log(room, Position(*known) if known else None)
            if known is not None and not read.recovered and read.epoch == known[0]:
                for connection in list(self.rooms.get(room, ())):
                    connection.send(history_frame(room, read))
                    if read.messages:
                        connection.admit(room, (read.epoch, read.top))
                continue
            for message in read.messages:
                self.deliver({"to": {"kind": "room", "room": room}, "frame": message, "skip": None})

    async def stop(self) -> None:
        await self.close_all(GOING_AWAY, "server shutting down")
        for task in list(self._presence_tasks):
            task.cancel()
        if self._heartbeat is not None:
            self._heartbeat.cancel()
            with contextlib.suppress(BaseException):
                await self._heartbeat
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

    async def unregister(self, connection: Connection) -> list[str]:
        """Forget the connection and leave its rooms; returns the rooms it left."""
        left = list(connection.rooms)
        for room in left:
            with contextlib.suppress(Exception):
                await self.leave(connection, room)
        self.connections.pop(connection.id, None)
        self.by_endpoint[connection.endpoint].discard(connection)
        if not self.connections:
            self._empty.set()
        return left

    def owner(self, connection: Connection) -> str:
        """Who a name in a room belongs to: the user; an anonymous client's claim (kept
        across its reconnects; stored hashed); else the connection."""
        if connection.user_id:
            return f"user:{connection.user_id}"
        if connection.claim:
            return "anon:" + hashlib.sha256(connection.claim.encode()).hexdigest()[:32]
        return f"conn:{connection.id}"

    async def join(self, connection: Connection, room: str, name: str) -> bool:
        """Add the connection to `room` under `name` (the connection takes that name); False if
        another owner has the name (the connection's name is then unchanged). If the shared
        store fails, whatever the join may have recorded is released (best effort) and the
        error is raised."""
        owner = self.owner(connection)
        record = member_record(connection.id, name, connection.user_id, self.directory.clock())
        try:
            if not await self.directory.join_member(room, record, owner):
                return False
        except Exception:
            with contextlib.suppress(Exception):
                await self.directory.remove_member(room, connection.id, record["key"], owner)
            raise
        connection.name = name
        connection.enter_room(room)  # room traffic waits until the joiner has the room's state
        self.rooms[room].add(connection)
        return True

    def welcomed(self, connection: Connection, room: str, position: tuple[str, int] | None) -> None:
        """The joiner has been sent the room's state and its log up to `position`: pass on
        what arrived meanwhile, in order, without the log messages it already has. (So
        `presence_state` is always a joiner's first frame of a room, and every message
        published since the log was read reaches it exactly once.)"""
        connection.welcome(room, position)

    async def leave(self, connection: Connection, room: str) -> bool:
        """Remove the connection from `room`; True when its name has left the room entirely."""
        connection.leave_room(room)
        self.rooms[room].discard(connection)
        if not self.rooms[room]:
            del self.rooms[room]
        return await self.directory.remove_member(
            room, connection.id, skeleton(connection.room_name), self.owner(connection)
        )

    async def publish_to_room(
        self, room: str, message: dict[str, Any], sent_id: str | None = None
    ) -> Published:
        """Give `message` its place in the room's log and send it to the room on every worker,
        in one step (app.realtime.rooms); returns it with its `offset` and `epoch`, or the
        logged message a resend with the same `sent_id` duplicates. Raises the store's error
        (`RedisError`)."""
        try:
            with publish_span(f"room/{room}") as trace:
                published = await self.directory.publish(
                    room, message, trace=trace, sent_id=sent_id
                )
        except RedisError:
            self.broker.count_undelivered()
            raise
        if not published.duplicate:
            CHAT_ROOM_MESSAGES.inc()
        return published

    def _record(self, connection: Connection) -> MemberRecord:
        return member_record(
            connection.id, connection.room_name, connection.user_id, self.directory.clock()
        )

    # Fan-out --------------------------------------------------------------------------------

    async def publish(
        self, to: Audience, frame: dict[str, Any] | str, skip: str | None = None
    ) -> None:
        """Deliver `frame` to the connections matching `to`, on every worker. Raises the
        broker's error (`redis.exceptions.RedisError`) when it cannot take the message."""
        message: BrokerMessage = {"to": to, "frame": frame, "skip": skip}
        with publish_span(destination(to)) as trace:
            if trace is not None:
                message["trace"] = trace
            await self.broker.publish(message)

    async def announce_presence(
        self,
        room: str,
        *,
        joined: dict[str, Any] | None = None,
        left: dict[str, Any] | None = None,
        skip: str | None = None,
    ) -> None:
        """Tell `room` that a name joined or left (`{"name", "user_id"}`), as Phoenix and
        Centrifugo do: the first change in a quiet room is published at once; changes within
        the next `PRESENCE_BATCH_SECONDS` are merged into one `presence_diff`, so a burst of N
        joins costs each member a few frames, not N. Raises the broker's error only for the
        change published at once (the caller's join or leave then fails)."""
        batch = self._presence.get(room)
        if batch is not None:
            batch.add(joined, left)
            return
        self._presence[room] = PresenceBatch()
        task = asyncio.create_task(self._flush_presence(room))
        self._presence_tasks.add(task)
        task.add_done_callback(self._presence_tasks.discard)
        await self.publish(
            {"kind": "room", "room": room},
            presence_diff(room, [joined] if joined else [], [left] if left else []),
            skip=skip,
        )

    async def _flush_presence(self, room: str) -> None:
        await asyncio.sleep(PRESENCE_BATCH_SECONDS)
        batch = self._presence.pop(room)
        if not (batch.joins or batch.leaves):
            return
        frame = presence_diff(room, list(batch.joins.values()), list(batch.leaves.values()))
        try:
            await self.publish({"kind": "room", "room": room}, frame)
        except Exception as error:  # counted by the broker
            log.warning("presence batch for %s not published: %s", room, type(error).__name__)

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
        if isinstance(frame, dict) and frame.get("event") == "presence_diff":
            sent = self._deliver_presence(targets, frame, room)
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
    def _deliver_presence(
        targets: list[Connection], frame: dict[str, Any], room: str | None
    ) -> int:
        """A presence diff without the receiver's own join (a batch may hold it); returns
        how many were queued."""
        text = encode(frame)
        wire_frame = text_frame(text)
        joined = {entry["name"] for entry in frame["joins"]}
        sent = 0
        for connection in targets:
            if connection.name in joined:
                joins = [entry for entry in frame["joins"] if entry["name"] != connection.name]
                if joins or frame["leaves"]:
                    sent += connection.offer(room, encode({**frame, "joins": joins}))
            else:
                sent += connection.offer(room, text, wire_frame)
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

    # Heartbeat ------------------------------------------------------------------------------

    async def _beat(self) -> None:
        while True:
            raise_if_stopping()
            await asyncio.sleep(self.heartbeat_seconds)
            try:
                for room, members in list(self.rooms.items()):
                    await self.directory.refresh(room, [self._record(c) for c in members])
                for user_id in {c.user_id for c in self.connections.values() if c.user_id}:
                    await self.presence.mark(user_id)
            except Exception as error:
                raise_if_stopping(error)
                log.warning("hub heartbeat failed: %s", type(error).__name__)


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


def history_frame(room: str, read: LogRead) -> dict[str, Any]:
    """The `history` frame of a log read (docs/websockets.md)."""
    return {
        "event": "history",
        "room": room,
        "messages": read.messages,
        "recovered": read.recovered,
        "epoch": read.epoch,
        "offset": read.top,
    }


def presence_diff(
    room: str, joins: list[dict[str, Any]], leaves: list[dict[str, Any]]
) -> dict[str, Any]:
    """The `presence_diff` frame (docs/websockets.md)."""
    return {"event": "presence_diff", "room": room, "joins": joins, "leaves": leaves}
