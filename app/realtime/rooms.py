"""Rooms, shared by every worker (Redis) or kept in memory: who is in a room, and its log.

**Members.** A member is one connection in a room: `{"conn", "name", "key", "user_id",
"seen"}`. Names are unique per room, as their `key` (`names.skeleton`: look-alike names are one
name): a name belongs to one owner ("user:<id>" for accounts, so a user's tabs share it;
"conn:<id>" for anonymous nicknames) while that owner has a connection in the room. Workers
refresh their members' `seen` every `WS_ROOM_HEARTBEAT` seconds; members of a worker that died
are dropped after three missed heartbeats, and their names become free again. Joining and
leaving are each one atomic step (a script in Redis), so two workers cannot both take a freed
name, nor a leave release a name another join just took. In Redis a room's member and name
records expire once nobody has refreshed them for the stale bound.

**The log.** Every message published to a room gets the next `offset` of the room's log (1, 2,
3, …) and the log's `epoch`, and is appended to the log and sent to every worker in one atomic
step: no offset is ever published twice or skipped, and every worker receives a room's
messages in offset order. The log keeps the last `CHAT_HISTORY` messages, for
`CHAT_HISTORY_SECONDS` after the last one. The epoch changes only when the log was lost (the
keys expired, Redis was flushed, the memory backend restarted): offsets then start again at 1.
`read_log` gives a rejoining client every message after its position when it can
(`recovered`), else the latest ones. docs/websockets.md has the protocol and its guarantee.

Redis keys (app.keyspace): a Redis Stream per room (entry ids `0-<offset>`, so a read from an
offset is one `XRANGE`) and a meta hash `{epoch, top}`, beside the member hashes; all of one
room share its shard's hash tag with the channel its messages go out on.
"""

from __future__ import annotations

import secrets
import time
from collections import defaultdict, deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, TypedDict

import orjson

from app.batching import SharedReads
from app.keyspace import Keyspace
from app.names import skeleton
from app.realtime.messages import BrokerMessage
from app.realtime.scripts import script
from app.redis_client import SharedRedis

Clock = Callable[[], float]  # epoch seconds
Deliver = Callable[[BrokerMessage], None]


@dataclass(frozen=True, slots=True)
class Published:
    """A published message as sent (with `offset` and `epoch`), or, for a resend of one the
    log holds (`duplicate`), that logged message."""

    message: dict[str, Any]
    duplicate: bool = False


class MemberRecord(TypedDict):
    """A connection in a room: its id, display name, the name's key (its skeleton), user
    (None: anonymous) and when it was last seen alive (epoch seconds)."""

    conn: str
    name: str
    key: str
    user_id: str | None
    seen: float


def member_record(conn: str, name: str, user_id: str | None, seen: float) -> MemberRecord:
    return {"conn": conn, "name": name, "key": skeleton(name), "user_id": user_id, "seen": seen}


@dataclass(frozen=True)
class Position:
    """A place in a room's log: the epoch and the offset of the last message seen there."""

    epoch: str
    offset: int


@dataclass(frozen=True)
class LogRead:
    """What `read_log` found: the log's epoch ("" before its first message), its top offset,
    whether the messages are exactly every one after the asked position (`recovered`), and the
    messages, oldest first."""

    epoch: str
    top: int
    recovered: bool
    messages: list[dict[str, Any]]


def new_epoch() -> str:
    return secrets.token_hex(6)


class RoomDirectory(Protocol):
    clock: Clock

    async def join_member(self, room: str, member: MemberRecord, owner: str) -> bool:
        """Add `member` to `room` under its name, reserved for `owner`, in one atomic step;
        False (nothing changed) if a live member of another owner has the name (or a name that
        looks like it)."""

    async def add_member(self, room: str, member: MemberRecord) -> None:
        """Add `member` without a name claim (the seed's nickname chat)."""

    async def remove_member(self, room: str, conn: str, key: str, owner: str) -> bool:
        """Remove a connection (atomically); True when no connection of that name is left."""

    async def members(self, room: str) -> Sequence[MemberRecord]:
        """Live members of `room` (stale ones are dropped first); read-only."""

    async def refresh(self, room: str, members: list[MemberRecord]) -> None:
        """Heartbeat: mark this worker's `members` of `room` as alive now."""

    async def publish(
        self,
        room: str,
        message: dict[str, Any],
        *,
        trace: str | None = None,
        sent_id: str | None = None,
    ) -> Published:
        """Give `message` the room's next offset and its epoch, append it to the log and send it
        to every worker's connections in the room, atomically; returns it as sent. `trace` (a
        W3C `traceparent`) rides in the broker envelope, not in the log. With `sent_id` (the
        sender's id of the message, scoped to the sender), a message the log still holds under
        that id is returned instead, as a duplicate, and nothing is sent. Raises the store's
        error (`RedisError`) when it could do none of it."""

    async def read_log(self, room: str, since: Position | None) -> LogRead:
        """Every message after `since` when the log still holds them all (recovered), else the
        latest `CHAT_HISTORY`."""


class MemoryRoomDirectory:
    """Rooms of this process (the embedded default); the log's epoch dies with the process.

    Arguments:
        stale_after: seconds without a heartbeat after which a member is gone.
        deliver: hands a published message to this process's connections (the in-process
            broker's `deliver`, set by the hub).
        keep, history_seconds: `CHAT_HISTORY` and `CHAT_HISTORY_SECONDS`.
    """

    def __init__(
        self,
        *,
        stale_after: float,
        keep: int = 50,
        history_seconds: float = 86400,
        clock: Clock = time.time,
    ) -> None:
        self.stale_after = stale_after
        self.keep = keep
        self.history_seconds = history_seconds
        self.clock = clock
        self.deliver: Deliver | None = None
        self._members: dict[str, dict[str, MemberRecord]] = defaultdict(dict)
        self._names: dict[str, dict[str, str]] = defaultdict(dict)
        self._logs: dict[str, _MemoryLog] = {}

    def _live(self, room: str) -> dict[str, MemberRecord]:
        limit = self.clock() - self.stale_after
        members = self._members[room]
        for conn in [c for c, m in members.items() if m["seen"] < limit]:
            del members[conn]
        return members

    async def join_member(self, room: str, member: MemberRecord, owner: str) -> bool:
        key = member["key"]
        holder = self._names[room].get(key)
        if holder not in (None, owner) and any(m["key"] == key for m in self._live(room).values()):
            return False
        self._names[room][key] = owner
        self._members[room][member["conn"]] = member
        return True

    async def add_member(self, room: str, member: MemberRecord) -> None:
        self._members[room][member["conn"]] = member

    async def remove_member(self, room: str, conn: str, key: str, owner: str) -> bool:
        self._members[room].pop(conn, None)
        if any(m["key"] == key for m in self._live(room).values()):
            return False
        if self._names[room].get(key) == owner:
            del self._names[room][key]
        if not self._members[room]:
            self._members.pop(room, None)
            self._names.pop(room, None)
        return True

    async def members(self, room: str) -> Sequence[MemberRecord]:
        return list(self._live(room).values())

    async def refresh(self, room: str, members: list[MemberRecord]) -> None:
        now = self.clock()
        for member in members:
            if member["conn"] in self._members[room]:
                self._members[room][member["conn"]]["seen"] = now

    def _log(self, room: str) -> _MemoryLog | None:
        log = self._logs.get(room)
        if log is not None and self.clock() - log.last_message > self.history_seconds:
            del self._logs[room]  # expired, as Redis expires the room's keys
            return None
        return log

    async def publish(
        self,
        room: str,
        message: dict[str, Any],
        *,
        trace: str | None = None,
        sent_id: str | None = None,
    ) -> Published:
        log = self._log(room)
        if log is None:
            log = self._logs[room] = _MemoryLog(new_epoch(), self.keep)
        if sent_id is not None and (logged := log.logged(sent_id)) is not None:
            return Published(logged, duplicate=True)
        published = log.append(message, self.clock(), sent_id)
        if self.deliver is not None:  # no await since the offset was taken: in order
            envelope: BrokerMessage = {
                "to": {"kind": "room", "room": room},
                "frame": published,
                "skip": None,
            }
            if trace is not None:
                envelope["trace"] = trace
            self.deliver(envelope)
        return Published(published)

    async def read_log(self, room: str, since: Position | None) -> LogRead:
        log = self._log(room)
        if log is None:
            return LogRead("", 0, False, [])
        return log.read(since, self.keep)


class _MemoryLog:
    def __init__(self, epoch: str, keep: int) -> None:
        self.epoch = epoch
        self.top = 0
        self.last_message = 0.0
        self.messages: deque[dict[str, Any]] = deque(maxlen=keep or None)
        self.keep = keep
        self.sent: dict[str, int] = {}  # sender's id -> offset, oldest first, within the log

    def append(
        self, message: dict[str, Any], now: float, sent_id: str | None = None
    ) -> dict[str, Any]:
        self.top += 1
        self.last_message = now
        published = {**message, "offset": self.top, "epoch": self.epoch}
        if self.keep:
            self.messages.append(published)
            if sent_id is not None:
                self.sent[sent_id] = self.top
            while self.sent and next(iter(self.sent.values())) <= self.top - self.keep:
                del self.sent[next(iter(self.sent))]
        return published

    def logged(self, sent_id: str) -> dict[str, Any] | None:
        """The message the log holds under the sender's id `sent_id`, if any."""
        offset = self.sent.get(sent_id)
        if offset is None or not self.messages:
            return None
        index = offset - self.messages[0]["offset"]
        return self.messages[index] if 0 <= index < len(self.messages) else None

    def read(self, since: Position | None, count: int) -> LogRead:
        if since is not None and since.epoch == self.epoch and since.offset <= self.top:
            first = self.messages[0]["offset"] if self.messages else self.top + 1
            if since.offset == self.top or first <= since.offset + 1:
                after = [m for m in self.messages if m["offset"] > since.offset]
                return LogRead(self.epoch, self.top, True, after)
        latest = list(self.messages)[-count:] if count else []
        return LogRead(self.epoch, self.top, False, latest)


class RedisRoomDirectory:
    """Rooms in Redis (see the module docstring for the keys).

    Arguments:
        redis: the worker's client; keyspace: the key and channel names (app.keyspace);
        stale_after: seconds without a heartbeat after which a member is gone;
        keep, history_seconds: `CHAT_HISTORY` and `CHAT_HISTORY_SECONDS`.
    """

    def __init__(
        self,
        redis: SharedRedis,
        *,
        stale_after: float,
        keyspace: Keyspace | None = None,
        keep: int = 50,
        history_seconds: int = 86400,
        clock: Clock = time.time,
    ) -> None:
        self.redis = redis
        self.stale_after = stale_after
        self.keyspace = keyspace or Keyspace()
        self.keep = keep
        self.history_seconds = history_seconds
        self.clock = clock
        self._join = redis.register_script(script("room_join"))
        self._leave = redis.register_script(script("room_leave"))
        self._publish = redis.register_script(script("room_publish"))
        self._read = redis.register_script(script("room_read"))
        self._member_reads: SharedReads[list[MemberRecord]] = SharedReads(self._live)
        # Joins of one loop turn asking the same room from the same position share one read
        # (a thousand clients reconnecting after a deploy mostly ask the same).
        self._log_reads: SharedReads[LogRead] = SharedReads(self._read_log)

    @property
    def _ttl(self) -> int:
        return max(1, int(self.stale_after + 1))

    async def _live(self, room: str) -> list[MemberRecord]:
        keys = self.keyspace.room(room)
        raw = await self.redis.hgetall(keys.members)
        limit = self.clock() - self.stale_after
        live: list[tuple[str, MemberRecord]] = []
        stale: list[tuple[str, MemberRecord]] = []
        for conn, text in raw.items():
            member = orjson.loads(text)
            (live if member["seen"] >= limit else stale).append((_text(conn), member))
        if stale:
            await self.redis.hdel(keys.members, *[conn for conn, _ in stale])
        return [member for _, member in live]

    async def join_member(self, room: str, member: MemberRecord, owner: str) -> bool:
        keys = self.keyspace.room(room)
        joined = await self._join(
            keys=[keys.names, keys.members],
            args=[
                member["key"],
                owner,
                member["conn"],
                orjson.dumps(member).decode(),
                self.clock() - self.stale_after,
                self._ttl,
            ],
        )
        return bool(joined)

    async def add_member(self, room: str, member: MemberRecord) -> None:
        key = self.keyspace.room(room).members
        async with self.redis.pipeline(transaction=True) as pipeline:
            pipeline.hset(key, member["conn"], orjson.dumps(member).decode())
            pipeline.expire(key, self._ttl)
            await pipeline.execute()

    async def remove_member(self, room: str, conn: str, key: str, owner: str) -> bool:
        keys = self.keyspace.room(room)
        left = await self._leave(
            keys=[keys.names, keys.members],
            args=[conn, key, owner, self.clock() - self.stale_after],
        )
        return bool(left)

    async def members(self, room: str) -> Sequence[MemberRecord]:
        """Live members of `room`: one Redis read serves every caller that asks during the
        same loop turn (a burst of joins to a large room would otherwise read the whole
        member hash once per join). The read starts after each of those callers asked, so
        each gets what a read of its own would have given. The sequence is shared by them:
        read it, never change it."""
        return await self._member_reads.read(room)

    async def refresh(self, room: str, members: list[MemberRecord]) -> None:
        now = self.clock()
        if members:
            keys = self.keyspace.room(room)
            async with self.redis.pipeline(transaction=True) as pipeline:
                pipeline.hset(
                    keys.members,
                    mapping={
                        member["conn"]: orjson.dumps({**member, "seen": now}).decode()
                        for member in members
                    },
                )
                pipeline.expire(keys.members, self._ttl)
                pipeline.expire(keys.names, self._ttl)
                await pipeline.execute()

    async def publish(
        self,
        room: str,
        message: dict[str, Any],
        *,
        trace: str | None = None,
        sent_id: str | None = None,
    ) -> Published:
        keys = self.keyspace.room(room)
        _, _, text, duplicate = await self._publish(
            keys=[keys.meta, keys.log, keys.channel, keys.sent],
            args=[
                orjson.dumps(message).decode(),
                new_epoch(),
                self.keep,
                self.history_seconds,
                room,
                trace or "",
                sent_id or "",
            ],
        )
        return Published(orjson.loads(text), duplicate=bool(duplicate))

    async def read_log(self, room: str, since: Position | None) -> LogRead:
        """Shared by the joins of one loop turn that ask the same (see `members`)."""
        # A tuple: the parts stay apart whatever they hold (no separator to smuggle in).
        key = (room, since.epoch, since.offset) if since else (room, "", 0)
        return await self._log_reads.read(key)

    async def _read_log(self, shared_key: tuple[str, str, int]) -> LogRead:
        room, epoch, offset = shared_key
        keys = self.keyspace.room(room)
        found_epoch, top, recovered, texts = await self._read(
            keys=[keys.meta, keys.log], args=[epoch, offset, self.keep]
        )
        return LogRead(
            _text(found_epoch), int(top), bool(recovered), [orjson.loads(text) for text in texts]
        )


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
