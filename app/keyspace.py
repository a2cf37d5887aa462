"""The names of this service's Redis keys and pub/sub channels, in one place.

Every key carries `REDIS_KEY_PREFIX`. Keys that a Lua script or a multi-key command uses
together share a hash tag (the part in braces), so they live in one slot of a Redis Cluster:

- the hub's traffic is split over `HUB_SHARDS` sharded pub/sub channels (`SPUBLISH`,
  Redis 7+), `<prefix>{hub:<n>}db<d>:hub`, spread over a cluster's nodes by their slots; every
  worker subscribes to all of them. A message goes to the shard of its audience (its room, or
  its endpoint), so the messages of one room stay in order;
- a room's keys carry the tag of its shard, `<prefix>{hub:<n>}room/<room>/<kind>`: the script
  that appends a message to the room's log publishes it on the room's channel in the same
  atomic step (app/realtime/rooms.py).

Pub/sub channels are global to a Redis server, not per database, so they also carry the
database number: two deployments on one server (other databases or prefixes) never share one.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass

HUB_SHARDS = 16


@dataclass(frozen=True)
class RoomKeys:
    """The keys of one room, all in one slot, and the channel its messages go out on."""

    members: str  # hash: connection id -> member JSON
    names: str  # hash: name skeleton -> owner (names are claimed per room)
    log: str  # stream of messages, ids 0-<offset>
    meta: str  # hash: {epoch, top}: the log's epoch and its last offset
    sent: str  # sorted set: a sender's message id -> its offset (resends within the log)
    channel: str


@dataclass(frozen=True)
class Keyspace:
    """Arguments: prefix, `REDIS_KEY_PREFIX`; database, the Redis database number."""

    prefix: str = ""
    database: int = 0
    shards: int = HUB_SHARDS

    def shard(self, routing_key: str) -> int:
        """The hub shard of a room or endpoint name (CRC-32, the same in every process)."""
        return zlib.crc32(routing_key.encode()) % self.shards

    def channel(self, shard: int) -> str:
        return f"{self.prefix}{{hub:{shard}}}db{self.database}:hub"

    def channels(self) -> list[str]:
        return [self.channel(shard) for shard in range(self.shards)]

    def room(self, room: str) -> RoomKeys:
        shard = self.shard(room)
        base = f"{self.prefix}{{hub:{shard}}}room/{room}/"
        return RoomKeys(
            members=base + "members",
            names=base + "names",
            log=base + "log",
            meta=base + "meta",
            sent=base + "sent",
            channel=self.channel(shard),
        )
