"""Rooms: join, leave, publish, presence, history and catch-up, for every worker.

The room service owns what a room is (its members and log in the shared `RoomDirectory`, its
presence announcements, a joiner's welcome) and uses the hub (app.realtime.hub: this worker's
connections and local fan-out) and, through it, the broker. A chat frame flows one way:
handler (app.ws.chat) -> room service -> directory, broker and hub -> connection. As
Centrifuge splits its Node (channels, presence, history) from its Hub (connections).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, TypedDict

from redis.exceptions import RedisError

from app.batching import BatchedLookup
from app.cancellation import raise_if_stopping
from app.metrics import CHAT_ROOM_MESSAGES
from app.names import skeleton
from app.presence import PresenceRecorder
from app.realtime.connection import GOING_AWAY, Connection
from app.realtime.hub import Hub
from app.realtime.rooms import (
    LogRead,
    MemberRecord,
    Position,
    Published,
    RoomDirectory,
    member_record,
)
from app.tracing import publish_span

log = logging.getLogger(__name__)

NICKNAME_ROOM = "~nickname-chat"  # the seed endpoint's members; chat rooms cannot start with "~"
PRESENCE_BATCH_SECONDS = 0.2
JOIN_CONCURRENCY = 16  # joins of this worker in progress at once (app.ws.chat.room_chat)


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


class RoomService:
    """The rooms of this worker's connections.

    Arguments:
        hub: this worker's connections and their fan-out.
        directory: room membership and history shared by every worker.
        presence: marks authenticated connections online on every heartbeat.
        heartbeat_seconds: how often this worker refreshes its room members and presence.
        taken_names: which of some name skeletons (app.names) belong to accounts
            (`{skeleton: True}`); a burst of joins asks it once per loop turn.
    """

    def __init__(
        self,
        hub: Hub,
        directory: RoomDirectory,
        presence: PresenceRecorder,
        *,
        heartbeat_seconds: float,
        taken_names: TakenNames = no_account_names,
    ) -> None:
        self.hub = hub
        self.directory = directory
        self.presence = presence
        self.heartbeat_seconds = heartbeat_seconds
        self.join_slots = asyncio.Semaphore(JOIN_CONCURRENCY)
        self._presence: dict[str, PresenceBatch] = {}
        self._presence_tasks: set[asyncio.Task[None]] = set()
        self._heartbeat: asyncio.Task[None] | None = None
        self._account_names = BatchedLookup(taken_names, False)
        # The presence entries of the last member sequence (`presence_entries`).
        self._last_members: Sequence[MemberRecord] | None = None
        self._last_entries: list[PresenceEntry] = []
        hub.intercepts[PRESENCE_DIFF] = without_own_join

    async def start(self) -> None:
        """Start the hub (its broker subscription) and the heartbeat."""
        await self.hub.start()
        self._heartbeat = asyncio.create_task(self._beat(), name="room-heartbeat")

    async def stop(self) -> None:
        """The worker's drain: every connection closed with 1001 (the hub), then the
        heartbeat and pending presence batches stopped, then the broker closed."""
        await self.hub.close_all(GOING_AWAY, "server shutting down")
        for task in list(self._presence_tasks):
            task.cancel()
        if self._heartbeat is not None:
            self._heartbeat.cancel()
            with contextlib.suppress(BaseException):
                await self._heartbeat
        await self.hub.close_broker()

    async def leave_all(self, connection: Connection) -> list[str]:
        """Take a closing connection out of every room it is in; returns those rooms."""
        left = list(connection.rooms)
        for room in left:
            with contextlib.suppress(Exception):
                await self.leave(connection, room)
        return left

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

    async def catch_up(self) -> None:
        """After the broker (re)subscribed: send this worker's connections what their rooms'
        logs got while it was not listening (each connection takes only what is new to it,
        `Connection.admit`). Runs before the subscription's first message is read, so what
        comes live follows in order. Where the log no longer holds everything missed, the
        room's connections get `history` with `recovered: false`, as a rejoining client would."""
        for room in list(self.hub.rooms):
            known = self.hub.positions.get(room)
            read = await self.directory.read_log(room, Position(*known) if known else None)
            if known is not None and not read.recovered and read.epoch == known[0]:
                for connection in list(self.hub.rooms.get(room, ())):
                    connection.send(history_frame(room, read))
                    if read.messages:
                        connection.admit(room, (read.epoch, read.top))
                continue
            for message in read.messages:
                self.hub.deliver(
                    {"to": {"kind": "room", "room": room}, "frame": message, "skip": None}
                )

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
        self.hub.add_to_room(connection, room)  # held until the joiner has the room's state
        return True

    def welcomed(self, connection: Connection, room: str, position: tuple[str, int] | None) -> None:
        """The joiner has been sent the room's state and its log up to `position`: pass on
        what arrived meanwhile, in order, without the log messages it already has. (So
        `presence_state` is always a joiner's first frame of a room, and every message
        published since the log was read reaches it exactly once.)"""
        connection.welcome(room, position)

    async def leave(self, connection: Connection, room: str) -> bool:
        """Remove the connection from `room`; True when its name has left the room entirely."""
        self.hub.remove_from_room(connection, room)
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
            self.hub.broker.count_undelivered()
            raise
        if not published.duplicate:
            CHAT_ROOM_MESSAGES.inc()
        return published

    async def send_private(self, room: str, to: str, message: dict[str, Any]) -> None:
        """Send `message` to the connections named `to` in `room`, on every worker (live only,
        not logged). Raises the broker's error."""
        await self.hub.publish({"kind": "names", "room": room, "names": [to]}, message)

    def _record(self, connection: Connection) -> MemberRecord:
        return member_record(
            connection.id, connection.room_name, connection.user_id, self.directory.clock()
        )

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
        await self.hub.publish(
            {"kind": "room", "room": room},
            presence_diff(room, [joined] if joined else [], [left] if left else []),
            skip=skip,
            intercept=PRESENCE_DIFF,
        )

    async def _flush_presence(self, room: str) -> None:
        await asyncio.sleep(PRESENCE_BATCH_SECONDS)
        batch = self._presence.pop(room)
        if not (batch.joins or batch.leaves):
            return
        frame = presence_diff(room, list(batch.joins.values()), list(batch.leaves.values()))
        try:
            await self.hub.publish({"kind": "room", "room": room}, frame, intercept=PRESENCE_DIFF)
        except Exception as error:  # counted by the broker
            log.warning("presence batch for %s not published: %s", room, type(error).__name__)

    # Heartbeat ------------------------------------------------------------------------------

    async def _beat(self) -> None:
        while True:
            raise_if_stopping()
            await asyncio.sleep(self.heartbeat_seconds)
            try:
                for room, members in list(self.hub.rooms.items()):
                    await self.directory.refresh(room, [self._record(c) for c in members])
                for user_id in {c.user_id for c in self.hub.connections.values() if c.user_id}:
                    await self.presence.mark(user_id)
            except Exception as error:
                raise_if_stopping(error)
                log.warning("room heartbeat failed: %s", type(error).__name__)


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


PRESENCE_DIFF = "presence_diff"


def without_own_join(frame: dict[str, Any], receiver: Connection) -> dict[str, Any] | None:
    """A `presence_diff` as `receiver` gets it: without its own join (a batch may hold it),
    and none at all when nothing else is left (Hub.intercepts)."""
    if all(entry["name"] != receiver.name for entry in frame["joins"]):
        return frame
    joins = [entry for entry in frame["joins"] if entry["name"] != receiver.name]
    return {**frame, "joins": joins} if joins or frame["leaves"] else None


def presence_diff(
    room: str, joins: list[dict[str, Any]], leaves: list[dict[str, Any]]
) -> dict[str, Any]:
    """The `presence_diff` frame (docs/websockets.md)."""
    return {"event": PRESENCE_DIFF, "room": room, "joins": joins, "leaves": leaves}
