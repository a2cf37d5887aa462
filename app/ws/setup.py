"""Creating and closing a worker's realtime parts: broker, room directory, hub, room service,
monitor."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from limits import parse

from app.keyspace import Keyspace
from app.realtime.broker import Broker, InProcessBroker, RedisBroker
from app.realtime.hub import Hub
from app.realtime.memory import MemoryMonitor
from app.realtime.read_rules import ReadRules
from app.realtime.room_service import RoomService
from app.realtime.rooms import MemoryRoomDirectory, RedisRoomDirectory, RoomDirectory
from app.redis_client import SharedRedis, redis_database
from app.services import accounts
from app.state import AppState

STALE_HEARTBEATS = 3


def keyspace_of(redis: SharedRedis, prefix: str) -> Keyspace:
    """The key and channel names of this deployment (app.keyspace): channels are global to a
    Redis server, so they carry the database number as well as `REDIS_KEY_PREFIX`."""
    return Keyspace(prefix=prefix, database=redis_database(redis))


@asynccontextmanager
async def realtime(state: AppState, redis: SharedRedis | None) -> AsyncIterator[None]:
    """The worker's realtime parts, open for the block: the hub (and its broker
    subscription), the room service, the memory monitor and the read rules; the room service's
    drain hook, which sends every websocket 1001 when the worker starts shutting down
    (app.supervisor). Closed in the reverse order, whatever the block did."""
    settings = state.settings
    assert state.presence is not None, "presence opens before the realtime parts"
    stale_after = settings.ws_room_heartbeat * STALE_HEARTBEATS
    broker: Broker
    directory: RoomDirectory
    redis_broker: RedisBroker | None = None
    memory_directory: MemoryRoomDirectory | None = None
    if redis is not None:
        keyspace = keyspace_of(redis, settings.redis_key_prefix)
        broker = redis_broker = RedisBroker(redis, keyspace)
        directory = RedisRoomDirectory(
            redis,
            stale_after=stale_after,
            keyspace=keyspace,
            keep=settings.chat_history,
            history_seconds=settings.chat_history_seconds,
        )
    else:
        broker = InProcessBroker()
        directory = memory_directory = MemoryRoomDirectory(
            stale_after=stale_after,
            keep=settings.chat_history,
            history_seconds=settings.chat_history_seconds,
        )
    database = state.database
    assert database is not None, "the database opens before the realtime parts"

    async def taken_names(skeletons: list[str]) -> dict[str, bool]:
        async with database.session() as session:
            return dict.fromkeys(await accounts.taken_skeletons(session, skeletons), True)

    hub = Hub(broker, state.presence)
    rooms = RoomService(
        hub,
        directory,
        state.presence,
        heartbeat_seconds=settings.ws_room_heartbeat,
        taken_names=taken_names,
    )
    if redis_broker is not None:
        redis_broker.on_subscribed = rooms.catch_up
    if memory_directory is not None:
        memory_directory.deliver = hub.deliver
    monitor = MemoryMonitor(settings.monitor_interval)
    try:
        await rooms.start()
        state.hub = hub
        state.rooms = rooms
        state.memory_monitor = monitor
        state.ws_read_rules = ReadRules(
            max_message_bytes=settings.ws_max_message_bytes,
            idle_timeout=settings.ws_idle_timeout,
            rate=parse(settings.ws_rate_limit),
            flood_strikes=settings.ws_flood_strikes,
        )
        state.drain_hooks.append(rooms.stop)
        yield
    finally:
        state.drain_hooks.clear()
        state.memory_monitor = state.hub = state.rooms = state.ws_read_rules = None
        await monitor.stop()
        await rooms.stop()
