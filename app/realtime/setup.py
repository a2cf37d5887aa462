"""Creating and closing a worker's realtime parts: broker, room directory, hub, monitor."""

from __future__ import annotations

from limits import parse
from quart import Quart
from redis.asyncio import Redis

from app.realtime.broker import Broker, InProcessBroker, RedisBroker
from app.realtime.connection import ReadRules
from app.realtime.hub import Hub
from app.realtime.monitor import MemoryMonitor
from app.realtime.rooms import MemoryRoomDirectory, RedisRoomDirectory, RoomDirectory
from app.settings import Settings

STALE_HEARTBEATS = 3


def hub_channel(redis: Redis, prefix: str) -> str:
    """The hub's pub/sub channel: `<prefix>db<N>:hub`. Channels are global to a Redis server,
    so two deployments on one server (other db numbers or prefixes) never share one."""
    database = redis.connection_pool.connection_kwargs.get("db", 0)
    return f"{prefix}db{database}:hub"


async def open_realtime(app: Quart, settings: Settings, redis: Redis | None) -> None:
    """Start the hub (and its broker subscription) and register its drain hook, which sends
    every websocket 1001 when the worker starts shutting down (`app.serving`)."""
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
    hub = Hub(
        broker, directory, app.extensions["presence"], heartbeat_seconds=settings.ws_room_heartbeat
    )
    await hub.start()
    app.extensions["hub"] = hub
    app.extensions["memory_monitor"] = MemoryMonitor(settings.monitor_interval)
    app.extensions["ws_read_rules"] = ReadRules(
        max_message_bytes=settings.ws_max_message_bytes,
        idle_timeout=settings.ws_idle_timeout,
        rate=parse(settings.ws_rate_limit),
        flood_strikes=settings.ws_flood_strikes,
    )
    app.extensions.setdefault("drain_hooks", []).append(hub.stop)


async def close_realtime(app: Quart) -> None:
    monitor: MemoryMonitor | None = app.extensions.pop("memory_monitor", None)
    if monitor is not None:
        await monitor.stop()
    hub: Hub | None = app.extensions.pop("hub", None)
    if hub is not None:
        await hub.stop()
    app.extensions["drain_hooks"] = []
