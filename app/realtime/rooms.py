"""Room membership and history, shared by every worker (Redis) or kept in memory.

A member is one connection in a room: `{"conn", "name", "user_id", "seen"}`. Names are unique
per room: a name belongs to one owner ("user:<id>" for accounts, so a user's tabs share it;
"conn:<id>" for anonymous nicknames) while that owner has a connection in the room. Workers
refresh their members' `seen` every `WS_ROOM_HEARTBEAT` seconds; members of a worker that died
are dropped after three missed heartbeats, and their names become free again.

Joining is one atomic step (`join_member`: claim the name and add the member), so two workers
cannot both take a freed name. In Redis a room's member and name records expire once nobody
has refreshed them for the stale bound (an empty room leaves nothing behind), and its history
`CHAT_HISTORY_SECONDS` after its last message.
"""

from __future__ import annotations

import time
from collections import defaultdict, deque
from collections.abc import Callable, Sequence
from typing import Any, Protocol, TypedDict

import orjson
from redis.asyncio import Redis

from app.batching import SharedReads

Clock = Callable[[], float]  # epoch seconds


class MemberRecord(TypedDict):
    """A connection in a room: its id, display name, user (None: anonymous) and when it was
    last seen alive (epoch seconds)."""

    conn: str
    name: str
    user_id: str | None
    seen: float


def _dump(member: MemberRecord | dict[str, object]) -> str:
    return orjson.dumps(member).decode()


def member_record(conn: str, name: str, user_id: str | None, seen: float) -> MemberRecord:
    return {"conn": conn, "name": name, "user_id": user_id, "seen": seen}


class RoomDirectory(Protocol):
    clock: Clock

    async def join_member(self, room: str, member: MemberRecord, owner: str) -> bool:
        """Add `member` to `room` under its name, reserved for `owner`, in one atomic step;
        False (nothing changed) if a live member of another owner has the name."""

    async def add_member(self, room: str, member: MemberRecord) -> None:
        """Add `member` without a name claim (the seed's nickname chat)."""

    async def remove_member(self, room: str, conn: str, name: str, owner: str) -> bool:
        """Remove a connection; True when no connection of that name is left in the room."""

    async def members(self, room: str) -> Sequence[MemberRecord]:
        """Live members of `room` (stale ones are dropped first); read-only."""

    async def refresh(self, room: str, members: list[MemberRecord]) -> None:
        """Heartbeat: mark this worker's `members` of `room` as alive now."""

    async def append_history(self, room: str, message: dict[str, Any], keep: int) -> None: ...

    async def history(self, room: str) -> list[dict[str, Any]]:
        """The room's last messages, oldest first."""


class MemoryRoomDirectory:
    """Rooms of this process (the embedded default)."""

    def __init__(self, *, stale_after: float, clock: Clock = time.time) -> None:
        self.stale_after = stale_after
        self.clock = clock
        self._members: dict[str, dict[str, MemberRecord]] = defaultdict(dict)
        self._names: dict[str, dict[str, str]] = defaultdict(dict)
        self._history: dict[str, deque[dict[str, Any]]] = {}

    def _live(self, room: str) -> dict[str, MemberRecord]:
        limit = self.clock() - self.stale_after
        members = self._members[room]
        for conn in [c for c, m in members.items() if m["seen"] < limit]:
            del members[conn]
        return members

    async def join_member(self, room: str, member: MemberRecord, owner: str) -> bool:
        name = member["name"]
        holder = self._names[room].get(name)
        if holder not in (None, owner) and any(
            m["name"] == name for m in self._live(room).values()
        ):
            return False
        self._names[room][name] = owner
        self._members[room][member["conn"]] = member
        return True

    async def add_member(self, room: str, member: MemberRecord) -> None:
        self._members[room][member["conn"]] = member

    async def remove_member(self, room: str, conn: str, name: str, owner: str) -> bool:
        self._members[room].pop(conn, None)
        if any(m["name"] == name for m in self._live(room).values()):
            return False
        if self._names[room].get(name) == owner:
            del self._names[room][name]
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

    async def append_history(self, room: str, message: dict[str, Any], keep: int) -> None:
        if keep:
            self._history.setdefault(room, deque(maxlen=keep)).append(message)

    async def history(self, room: str) -> list[dict[str, Any]]:
        return list(self._history.get(room, ()))


# KEYS: names, members. ARGV: name, owner, conn, member JSON, oldest live `seen`, TTL (s).
# A name held by another owner is taken over only when no live member carries it.
JOIN_SCRIPT = """
local holder = redis.call('HGET', KEYS[1], ARGV[1])
if holder and holder ~= ARGV[2] then
  for _, text in ipairs(redis.call('HVALS', KEYS[2])) do
    local member = cjson.decode(text)
    if member['name'] == ARGV[1] and tonumber(member['seen']) >= tonumber(ARGV[5]) then
      return 0
    end
  end
end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
redis.call('HSET', KEYS[2], ARGV[3], ARGV[4])
redis.call('EXPIRE', KEYS[1], ARGV[6])
redis.call('EXPIRE', KEYS[2], ARGV[6])
return 1
"""


class RedisRoomDirectory:
    """Rooms in Redis: `room/<r>/members` (hash conn -> member JSON), `room/<r>/names` (hash
    name -> owner), both expiring `stale_after` seconds after the last join or heartbeat, and
    `room/<r>/history` (a list capped at `CHAT_HISTORY`, newest first, expiring
    `history_seconds` after the last message)."""

    def __init__(
        self,
        redis: Redis,
        *,
        stale_after: float,
        prefix: str = "",
        history_seconds: int = 86400,
        clock: Clock = time.time,
    ) -> None:
        self.redis = redis
        self.stale_after = stale_after
        self.prefix = prefix
        self.history_seconds = history_seconds
        self.clock = clock
        self._join = redis.register_script(JOIN_SCRIPT)
        self._member_reads: SharedReads[list[MemberRecord]] = SharedReads(self._live)
        self._history_reads: SharedReads[list[dict[str, Any]]] = SharedReads(self._history)

    @property
    def _ttl(self) -> int:
        return max(1, int(self.stale_after + 1))

    def _key(self, room: str, kind: str) -> str:
        return f"{self.prefix}room/{room}/{kind}"

    async def _live(self, room: str) -> list[MemberRecord]:
        raw = await self.redis.hgetall(self._key(room, "members"))
        limit = self.clock() - self.stale_after
        live: list[tuple[str, MemberRecord]] = []
        stale: list[tuple[str, MemberRecord]] = []
        for conn, text in raw.items():
            member = orjson.loads(text)
            (live if member["seen"] >= limit else stale).append((str(conn), member))
        if stale:
            await self.redis.hdel(self._key(room, "members"), *[conn for conn, _ in stale])
        return [member for _, member in live]

    async def join_member(self, room: str, member: MemberRecord, owner: str) -> bool:
        joined = await self._join(
            keys=[self._key(room, "names"), self._key(room, "members")],
            args=[
                member["name"],
                owner,
                member["conn"],
                _dump(member),
                self.clock() - self.stale_after,
                self._ttl,
            ],
        )
        return bool(joined)

    async def add_member(self, room: str, member: MemberRecord) -> None:
        key = self._key(room, "members")
        async with self.redis.pipeline(transaction=True) as pipeline:
            pipeline.hset(key, member["conn"], _dump(member))
            pipeline.expire(key, self._ttl)
            await pipeline.execute()

    async def remove_member(self, room: str, conn: str, name: str, owner: str) -> bool:
        await self.redis.hdel(self._key(room, "members"), conn)
        if any(member["name"] == name for member in await self._live(room)):
            return False
        if await self.redis.hget(self._key(room, "names"), name) == owner:
            await self.redis.hdel(self._key(room, "names"), name)
        return True

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
            async with self.redis.pipeline(transaction=True) as pipeline:
                pipeline.hset(
                    self._key(room, "members"),
                    mapping={member["conn"]: _dump({**member, "seen": now}) for member in members},
                )
                pipeline.expire(self._key(room, "members"), self._ttl)
                pipeline.expire(self._key(room, "names"), self._ttl)
                await pipeline.execute()

    async def append_history(self, room: str, message: dict[str, Any], keep: int) -> None:
        if keep:
            key = self._key(room, "history")
            async with self.redis.pipeline(transaction=True) as pipeline:
                pipeline.lpush(key, orjson.dumps(message).decode())
                pipeline.ltrim(key, 0, keep - 1)
                pipeline.expire(key, self.history_seconds)
                await pipeline.execute()

    async def history(self, room: str) -> list[dict[str, Any]]:
        """The room's recent messages, oldest first (shared reads, as `members`)."""
        return list(await self._history_reads.read(room))

    async def _history(self, room: str) -> list[dict[str, Any]]:
        items = await self.redis.lrange(self._key(room, "history"), 0, -1)
        return [orjson.loads(item) for item in reversed(items)]
