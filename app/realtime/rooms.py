"""Room membership and history, shared by every worker (Redis) or kept in memory.

A member is one connection in a room: `{"conn", "name", "user_id", "seen"}`. Names are unique
per room: a name belongs to one owner ("user:<id>" for accounts, so a user's tabs share it;
"conn:<id>" for anonymous nicknames) while that owner has a connection in the room. Workers
refresh their members' `seen` every `WS_ROOM_HEARTBEAT` seconds; members of a worker that died
are dropped after three missed heartbeats, and their names become free again.
"""

from __future__ import annotations

import json
import time
from collections import defaultdict, deque
from typing import Any, Protocol

from redis.asyncio import Redis


def member_record(conn: str, name: str, user_id: str | None, seen: float) -> dict[str, Any]:
    return {"conn": conn, "name": name, "user_id": user_id, "seen": seen}


class RoomDirectory(Protocol):
    async def claim_name(self, room: str, name: str, owner: str) -> bool:
        """Reserve `name` in `room` for `owner`; False if a live member of another owner has it."""

    async def add_member(self, room: str, member: dict[str, Any]) -> None: ...

    async def remove_member(self, room: str, conn: str, name: str, owner: str) -> bool:
        """Remove a connection; True when no connection of that name is left in the room."""

    async def members(self, room: str) -> list[dict[str, Any]]:
        """Live members of `room` (stale ones are dropped first)."""

    async def refresh(self, room: str, members: list[dict[str, Any]]) -> None:
        """Heartbeat: mark this worker's `members` of `room` as alive now."""

    async def append_history(self, room: str, message: dict[str, Any], keep: int) -> None: ...

    async def history(self, room: str) -> list[dict[str, Any]]:
        """The room's last messages, oldest first."""


class MemoryRoomDirectory:
    """Rooms of this process (the embedded default)."""

    def __init__(self, *, stale_after: float, clock=time.time) -> None:  # noqa: ANN001
        self.stale_after = stale_after
        self.clock = clock
        self._members: dict[str, dict[str, dict[str, Any]]] = defaultdict(dict)
        self._names: dict[str, dict[str, str]] = defaultdict(dict)
        self._history: dict[str, deque] = {}

    def _live(self, room: str) -> dict[str, dict[str, Any]]:
        limit = self.clock() - self.stale_after
        members = self._members[room]
        for conn in [c for c, m in members.items() if m["seen"] < limit]:
            del members[conn]
        return members

    async def claim_name(self, room: str, name: str, owner: str) -> bool:
        holder = self._names[room].get(name)
        if holder not in (None, owner) and any(
            m["name"] == name for m in self._live(room).values()
        ):
            return False
        self._names[room][name] = owner
        return True

    async def add_member(self, room: str, member: dict[str, Any]) -> None:
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

    async def members(self, room: str) -> list[dict[str, Any]]:
        return list(self._live(room).values())

    async def refresh(self, room: str, members: list[dict[str, Any]]) -> None:
        now = self.clock()
        for member in members:
            if member["conn"] in self._members[room]:
                self._members[room][member["conn"]]["seen"] = now

    async def append_history(self, room: str, message: dict[str, Any], keep: int) -> None:
        if keep:
            self._history.setdefault(room, deque(maxlen=keep)).append(message)

    async def history(self, room: str) -> list[dict[str, Any]]:
        return list(self._history.get(room, ()))


class RedisRoomDirectory:
    """Rooms in Redis: `room/<r>/members` (hash conn -> member JSON), `room/<r>/names` (hash
    name -> owner), `room/<r>/history` (a list capped at `CHAT_HISTORY`, newest first)."""

    def __init__(self, redis: Redis, *, stale_after: float, prefix: str = "",
                 clock=time.time) -> None:  # noqa: ANN001
        self.redis = redis
        self.stale_after = stale_after
        self.prefix = prefix
        self.clock = clock

    def _key(self, room: str, kind: str) -> str:
        return f"{self.prefix}room/{room}/{kind}"

    async def _live(self, room: str) -> list[dict[str, Any]]:
        raw = await self.redis.hgetall(self._key(room, "members"))
        limit = self.clock() - self.stale_after
        live, stale = [], []
        for conn, text in raw.items():
            member = json.loads(text)
            (live if member["seen"] >= limit else stale).append((conn, member))
        if stale:
            await self.redis.hdel(self._key(room, "members"), *[conn for conn, _ in stale])
        return [member for _, member in live]

    async def claim_name(self, room: str, name: str, owner: str) -> bool:
        key = self._key(room, "names")
        if await self.redis.hsetnx(key, name, owner):
            return True
        holder = await self.redis.hget(key, name)
        if holder == owner:
            return True
        if any(member["name"] == name for member in await self._live(room)):
            return False
        await self.redis.hset(key, name, owner)  # the holder left or its worker died
        return True

    async def add_member(self, room: str, member: dict[str, Any]) -> None:
        await self.redis.hset(self._key(room, "members"), member["conn"], json.dumps(member))

    async def remove_member(self, room: str, conn: str, name: str, owner: str) -> bool:
        await self.redis.hdel(self._key(room, "members"), conn)
        if any(member["name"] == name for member in await self._live(room)):
            return False
        if await self.redis.hget(self._key(room, "names"), name) == owner:
            await self.redis.hdel(self._key(room, "names"), name)
        return True

    async def members(self, room: str) -> list[dict[str, Any]]:
        return await self._live(room)

    async def refresh(self, room: str, members: list[dict[str, Any]]) -> None:
        now = self.clock()
        if members:
            await self.redis.hset(self._key(room, "members"), mapping={
                member["conn"]: json.dumps({**member, "seen": now}) for member in members
            })

    async def append_history(self, room: str, message: dict[str, Any], keep: int) -> None:
        if keep:
            key = self._key(room, "history")
            async with self.redis.pipeline(transaction=True) as pipeline:
                pipeline.lpush(key, json.dumps(message, ensure_ascii=False))
                pipeline.ltrim(key, 0, keep - 1)
                await pipeline.execute()

    async def history(self, room: str) -> list[dict[str, Any]]:
        items = await self.redis.lrange(self._key(room, "history"), 0, -1)
        return [json.loads(item) for item in reversed(items)]
