"""Creating and closing a worker's realtime parts: broker, room directory, hub, monitor."""

from __future__ import annotations

from limits import parse
from redis.asyncio import Redis

from app.realtime.broker import Broker, InProcessBroker, RedisBroker
from app.realtime.connection import ReadRules
from app.realtime.hub import Hub
from app.realtime.monitor import MemoryMonitor
from app.realtime.rooms import MemoryRoomDirectory, RedisRoomDirectory, RoomDirectory
from app.state import AppState

STALE_HEARTBEATS = 3


def hub_channel(redis: Redis, prefix: str) -> str:
    """The hub's pub/sub channel: `<prefix>db<N>:hub`. Channels are global to a Redis server,
    so two deployments on one server (other db numbers or prefixes) never share one."""
    database = redis.connection_pool.connection_kwargs.get("db", 0)
    return f"{prefix}db{database}:hub"


async def open_realtime(state: AppState, redis: Redis | None) -> None:
    """Start the hub (and its broker subscription) and register its drain hook, which sends
    every websocket 1001 when the worker starts shutting down (`app.serving`)."""
    settings = state.settings
    assert state.presence is not None, "presence opens before the realtime parts"
    stale_after = settings.ws_room_heartbeat * STALE_HEARTBEATS
    broker: Broker
    directory: RoomDirectory
    if redis is not None:
        broker = RedisBroker(redis, channel=hub_channel(redis, settings.redis_key_prefix))
        directory = RedisRoomDirectory(
            redis,
            stale_after=stale_after,
            prefix=settings.redis_key_prefix,
            history_seconds=settings.chat_history_seconds,
        )
    else:
        broker = InProcessBroker()
        directory = MemoryRoomDirectory(stale_after=stale_after)
    hub = Hub(broker, directory, state.presence, heartbeat_seconds=settings.ws_room_heartbeat)
    await hub.start()
    state.hub = hub
    state.memory_monitor = MemoryMonitor(settings.monitor_interval)
    state.ws_read_rules = ReadRules(
        max_message_bytes=settings.ws_max_message_bytes,
        idle_timeout=settings.ws_idle_timeout,
        rate=parse(settings.ws_rate_limit),
        flood_strikes=settings.ws_flood_strikes,
    )
    state.drain_hooks.append(hub.stop)


async def close_realtime(state: AppState) -> None:
    monitor, state.memory_monitor = state.memory_monitor, None
    if monitor is not None:
        await monitor.stop()
    hub, state.hub = state.hub, None
    if hub is not None:
        await hub.stop()
    state.ws_read_rules = None
    state.drain_hooks.clear()
