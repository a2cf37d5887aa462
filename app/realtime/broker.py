"""Brokers: how a message published on one worker reaches the connections of every worker.

`InProcessBroker` (the embedded default) hands messages straight back to this worker's hub: it
is correct for one process only. `RedisBroker` publishes on Redis sharded pub/sub channels that
every worker and container subscribes to; a lost subscription is re-established with back-off.
A room's messages do not go through `publish`: the room's log publishes them on its channel in
the same step as it numbers them (app.realtime.rooms).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from typing import Protocol

import orjson
from redis.asyncio.client import PubSub
from redis.asyncio.cluster import ClusterPubSub, RedisCluster
from redis.exceptions import RedisError

from app.cancellation import raise_if_stopping
from app.keyspace import Keyspace
from app.metrics import WEBSOCKET_DROPPED
from app.realtime.messages import Audience, BrokerMessage
from app.redis_client import SharedRedis

log = logging.getLogger(__name__)

Deliver = Callable[[BrokerMessage], None]
# A lost subscription is retried after 0.2 s, doubling up to this: after a Sentinel failover the
# chat is back within a second of the new master (tests/e2e/test_redis_sentinel.py).
RESUBSCRIBE_MAX_SECONDS = 1.0


class ShardMoved(RedisError):
    """The server ended a shard subscription (a cluster slot migration)."""


class Broker(Protocol):
    async def start(self, deliver: Deliver) -> None:
        """Begin handing every published message (from any worker) to `deliver`."""

    async def publish(self, message: BrokerMessage) -> None:
        """Send `message` (JSON-serialisable) to every worker, this one included."""

    def count_undelivered(self) -> None:
        """Count a message the store did not take."""

    async def close(self) -> None: ...


class InProcessBroker:
    """Delivers to this process only."""

    def __init__(self) -> None:
        self._deliver: Deliver | None = None

    async def start(self, deliver: Deliver) -> None:
        self._deliver = deliver

    async def publish(self, message: BrokerMessage) -> None:
        if self._deliver is not None:
            self._deliver(message)

    def count_undelivered(self) -> None:
        return None  # in process, every message is delivered

    async def close(self) -> None:
        self._deliver = None


class RedisBroker:
    """Redis sharded pub/sub (`SPUBLISH`/`SSUBSCRIBE`, Redis 7+) over `Keyspace.channels()`:
    each message goes to the shard of its audience (`route`), so the messages of one room or
    endpoint stay in order, and every worker (this one included) subscribes to every shard.
    On a Redis Cluster the shards spread over the nodes: no node carries all chat traffic.

    A lost subscription is made again with back-off until Redis answers; after each
    (re)subscription `on_subscribed` runs, so the hub can fetch from the rooms' logs what was
    published meanwhile. Messages that could not be published are counted in `undelivered`
    (and logged when Redis is back).
    """

    def __init__(
        self,
        redis: SharedRedis,
        keyspace: Keyspace,
        on_subscribed: Callable[[], Awaitable[None]] | None = None,
    ) -> None:
        self.redis = redis
        self.keyspace = keyspace
        self.on_subscribed = on_subscribed
        self.undelivered = 0
        self._task: asyncio.Task[None] | None = None
        self._first_attempt = asyncio.Event()
        self._undelivered_logged = 0

    def channel(self, to: Audience) -> str:
        """The shard channel of an audience: its room's, else its endpoint's."""
        key = to.get("room") or to.get("endpoint") or ""
        return self.keyspace.channel(self.keyspace.shard(str(key)))

    async def start(self, deliver: Deliver) -> None:
        self._task = asyncio.create_task(self._listen(deliver), name="redis-broker")
        # Wait for the first subscription, so nothing published after start() is missed, but
        # not for a Redis that is down: the worker serves without it and subscribes later.
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._first_attempt.wait(), timeout=5)

    async def _listen(self, deliver: Deliver) -> None:
        backoff = 0.2
        while True:
            raise_if_stopping()
            try:
                if isinstance(self.redis, RedisCluster):
                    # Learn the slots first: shard subscriptions look their node up in the
                    # client's slot map, which only a command fills otherwise.
                    await self.redis.initialize()
                async with self.redis.pubsub() as pubsub:
                    await pubsub.ssubscribe(*self.keyspace.channels())
                    self._first_attempt.set()
                    self._report_undelivered()
                    backoff = 0.2
                    if self.on_subscribed is not None:
                        await self.on_subscribed()
                    if isinstance(pubsub, ClusterPubSub):
                        # One reader per node holding some of the shards: a reader that waits
                        # on a quiet node must not hold back another node's messages.
                        async with asyncio.TaskGroup() as readers:
                            for node_pubsub in list(pubsub.node_pubsub_mapping.values()):
                                readers.create_task(self._read(node_pubsub, deliver))
                    else:
                        await self._read(pubsub, deliver)
            except asyncio.CancelledError:
                raise
            except Exception as error:
                raise_if_stopping(error)
                self._first_attempt.set()
                cause = error.exceptions[0] if isinstance(error, ExceptionGroup) else error
                log.warning(
                    "broker subscription lost (%s); retrying in %.1f s",
                    type(cause).__name__,
                    backoff,
                )
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, RESUBSCRIBE_MAX_SECONDS)

    async def _read(self, pubsub: PubSub, deliver: Deliver) -> None:
        """Deliver what `pubsub` receives until it fails. A shard the server unsubscribed
        (its slot moved to another cluster node) raises `ShardMoved`: all are subscribed
        again, on the nodes that hold them now."""
        while True:
            raise_if_stopping()
            # The client's socket timeout must not end an idle subscription.
            item = await pubsub.get_message(timeout=1.0)
            if item is None:
                continue
            if item.get("type") == "sunsubscribe":
                raise ShardMoved(str(item.get("channel")))
            if item.get("type") != "smessage":
                continue
            self._report_undelivered()  # a message arrived: Redis is back
            try:
                deliver(orjson.loads(item["data"]))
            except Exception:
                log.exception("undeliverable broker message")

    async def publish(self, message: BrokerMessage) -> None:
        """Raises a `redis.exceptions.RedisError` when Redis is unavailable (counted)."""
        try:
            await self.redis.spublish(self.channel(message["to"]), orjson.dumps(message))
        except RedisError:
            self.count_undelivered()
            raise
        self._report_undelivered()

    def count_undelivered(self) -> None:
        """A message Redis did not take (here, or in a room's publish script)."""
        self.undelivered += 1
        WEBSOCKET_DROPPED.labels("broker_unavailable").inc()

    def _report_undelivered(self) -> None:
        """Log, once Redis answers again, how many messages the outage cost."""
        if self.undelivered > self._undelivered_logged:
            log.warning(
                "%d messages could not be published while Redis was unavailable",
                self.undelivered - self._undelivered_logged,
            )
            self._undelivered_logged = self.undelivered

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(BaseException):
                await self._task
