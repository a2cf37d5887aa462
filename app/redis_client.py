"""The worker's Redis client (redis-py asyncio; hiredis parses replies when installed).

Every Redis call is bounded and a failing Redis is contained (docs/operations.md):
- each command times out after `REDIS_TIMEOUT` seconds (connect and read), with no retries
  (redis-py's default retries with back-off multiplied that wait several times over);
- connections come from a bounded pool (`REDIS_MAX_CONNECTIONS` per worker) that callers
  wait on for up to `REDIS_POOL_TIMEOUT` seconds, so a burst queues instead of failing;
- a circuit breaker: the first call that fails to reach Redis opens it, and while it is open
  every call fails at once with `RedisUnavailable` (a `redis.exceptions.ConnectionError`, so
  every existing Redis error path handles it), instead of each waiting out the timeout. A
  background probe pings Redis every `REDIS_PROBE_SECONDS` and closes it when Redis answers.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from typing import Any, TypeAlias

from redis.asyncio import ConnectionPool, Redis
from redis.asyncio.client import Pipeline
from redis.asyncio.cluster import ClusterNode, ClusterPipeline, RedisCluster
from redis.asyncio.connection import AbstractConnection
from redis.asyncio.retry import Retry
from redis.asyncio.sentinel import Sentinel, SentinelConnectionPool
from redis.backoff import NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisClusterException
from redis.exceptions import TimeoutError as RedisTimeoutError

from app.settings import Settings

log = logging.getLogger(__name__)

# A command that did not reach Redis or got no answer; a reply error (WRONGTYPE…) is not one.
UNREACHABLE = (RedisConnectionError, RedisTimeoutError, OSError, asyncio.TimeoutError)


def _is_pool_wait(error: BaseException) -> bool:
    """A wait for a free pooled connection that ran out: load here, not a Redis failure."""
    return (
        isinstance(error, RedisConnectionError)
        and isinstance(error.__cause__, asyncio.TimeoutError)
        and "No connection available" in str(error)
    )


class BoundedWaitConnectionPool(ConnectionPool):
    """redis-py's `ConnectionPool` with the promise of its `BlockingConnectionPool`: at most
    `max_connections` connections, and a caller waits up to `timeout` seconds for a free one,
    then gets `ConnectionError("No connection available.")` (caused by a `TimeoutError`).

    redis-py 8's blocking pool takes a condition, a timeout and observability hooks on every
    checkout: 240-350 µs of CPU per command against 150 µs for the plain pool (bench/, a GET on
    loopback). Here a checkout that need not wait costs one semaphore decrement. (The plain
    pool's checkout also records OpenTelemetry pool metrics, which this service does not use.)
    """

    def __init__(self, *, timeout: float, max_connections: int, **kwargs: Any) -> None:
        super().__init__(max_connections=max_connections, **kwargs)
        self._bound_waits(timeout, max_connections)

    def _bound_waits(self, timeout: float, max_connections: int) -> None:
        self.timeout = timeout
        self._free = asyncio.Semaphore(max_connections)

    async def get_connection(self, *_args: Any, **_options: Any) -> AbstractConnection:
        if self._free.locked():
            try:
                async with asyncio.timeout(self.timeout):
                    await self._free.acquire()
            except TimeoutError as error:
                raise RedisConnectionError("No connection available.") from error
        else:
            await self._free.acquire()  # free: returns without yielding
        try:
            connection: AbstractConnection = self.get_available_connection()  # type: ignore[no-untyped-call]
        except BaseException:
            self._free.release()
            raise
        try:
            await self.ensure_connection(connection)
        except BaseException:
            await self.release(connection)  # gives its slot back too
            raise
        return connection

    async def release(self, connection: AbstractConnection) -> None:
        checked_out = connection in self._in_use_connections
        try:
            await super().release(connection)
        finally:
            if checked_out:  # a slot per checkout, even if closing a broken connection fails
                self._free.release()


class BoundedWaitSentinelPool(BoundedWaitConnectionPool, SentinelConnectionPool):
    """The bounded pool for a master found through Sentinel: each new connection asks the
    sentinels where the master is (redis-py's `SentinelConnectionPool`), so after a failover
    the connections that fail are replaced by connections to the promoted replica, and a
    connection to a master demoted to replica is dropped at its first write (READONLY)."""

    def __init__(
        self,
        service_name: str,
        sentinel_manager: Sentinel,
        *,
        timeout: float,
        max_connections: int,
        **kwargs: Any,
    ) -> None:
        SentinelConnectionPool.__init__(
            self, service_name, sentinel_manager, max_connections=max_connections, **kwargs
        )
        self._bound_waits(timeout, max_connections)


class RedisUnavailable(RedisConnectionError):
    """Redis is known to be down (the circuit is open); raised at once, without I/O."""


def _count_error(kind: str) -> None:
    """`redis_errors_total{kind}`. app.metrics is imported here, not with this module: the
    supervisor imports this module (its topology check) and must make no metric
    (app/metric_files.py)."""
    from app.metrics import REDIS_ERRORS

    REDIS_ERRORS.labels(kind).inc()


class RedisCircuit:
    """Whether Redis is reachable, as last seen by this worker.

    Arguments:
        probe: an awaitable factory that pings Redis (raises when it cannot).
        probe_seconds: how often the open circuit tries the probe.
    """

    def __init__(self, probe: Any, probe_seconds: float) -> None:
        self._probe = probe
        self.probe_seconds = probe_seconds
        self.failures = 0  # times the circuit opened
        self._task: asyncio.Task[None] | None = None

    @property
    def is_open(self) -> bool:
        return self._task is not None and not self._task.done()

    def check(self) -> None:
        """Raise `RedisUnavailable` while the circuit is open."""
        if self.is_open:
            _count_error("circuit_open")
            raise RedisUnavailable("Redis is unavailable (circuit open)")

    def record_failure(self, error: BaseException) -> None:
        """Open the circuit after a call could not reach Redis."""
        _count_error("unreachable")
        if self.is_open or _is_pool_wait(error):
            return
        self.failures += 1
        log.warning(
            "redis unreachable (%s); failing fast, probing every %.1f s",
            type(error).__name__,
            self.probe_seconds,
        )
        self._task = asyncio.get_running_loop().create_task(self._recover(), name="redis-probe")

    async def _recover(self) -> None:
        while True:
            await asyncio.sleep(self.probe_seconds)
            with contextlib.suppress(*UNREACHABLE):
                await self._probe()
                log.info("redis reachable again")
                return

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(BaseException):
                await self._task


class GuardedPipeline(Pipeline):
    """A pipeline whose `execute` goes through the client's circuit."""

    circuit: RedisCircuit

    async def execute(self, raise_on_error: bool = True) -> list[Any]:
        self.circuit.check()
        try:
            return await super().execute(raise_on_error)
        except UNREACHABLE as error:
            self.circuit.record_failure(error)
            raise


class GuardedRedis(Redis):
    """`redis.asyncio.Redis` whose commands and pipelines go through a `RedisCircuit`."""

    circuit: RedisCircuit

    async def execute_command(self, *args: Any, **options: Any) -> Any:
        self.circuit.check()
        try:
            return await super().execute_command(*args, **options)  # type: ignore[no-untyped-call]
        except UNREACHABLE as error:
            self.circuit.record_failure(error)
            raise

    def pipeline(self, transaction: bool = True, shard_hint: str | None = None) -> Pipeline:
        pipeline = GuardedPipeline(
            self.connection_pool, self.response_callbacks, transaction, shard_hint
        )
        pipeline.circuit = self.circuit
        return pipeline

    async def ping_unguarded(self) -> bool:
        """PING that ignores the circuit (its probe)."""
        return bool(await super().execute_command("PING"))  # type: ignore[no-untyped-call]

    async def aclose(self, close_connection_pool: bool | None = None) -> None:
        await self.circuit.close()
        await super().aclose(close_connection_pool)
        if isinstance(self.connection_pool, SentinelConnectionPool):
            await self.connection_pool.sentinel_manager.aclose()


class GuardedClusterPipeline(ClusterPipeline):
    """A cluster pipeline whose `execute` goes through the client's circuit and its limit of
    commands in flight."""

    client: GuardedRedisCluster

    async def execute(
        self, raise_on_error: bool = True, allow_redirections: bool = True
    ) -> list[Any]:
        async with self.client.guard():
            return await super().execute(raise_on_error, allow_redirections)


class GuardedRedisCluster(RedisCluster):
    """`redis.asyncio.RedisCluster` behind the same guards as `GuardedRedis`: a `RedisCircuit`,
    and at most `max_in_flight` commands and pipelines of this worker at once, a caller waiting
    up to `wait_timeout` seconds for a turn (redis-py's cluster nodes refuse a connection past
    their limit at once instead of waiting: `MaxConnectionsError`). A turn that does not come
    is `ConnectionError("No connection available.")`, as with the bounded pool."""

    circuit: RedisCircuit

    def __init__(self, *, max_in_flight: int, wait_timeout: float, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._turns = asyncio.Semaphore(max_in_flight)
        self._wait_timeout = wait_timeout

    @contextlib.asynccontextmanager
    async def guard(self) -> AsyncIterator[None]:
        self.circuit.check()
        if self._turns.locked():
            try:
                async with asyncio.timeout(self._wait_timeout):
                    await self._turns.acquire()
            except TimeoutError as error:
                raise RedisConnectionError("No connection available.") from error
        else:
            await self._turns.acquire()
        try:
            yield
        except UNREACHABLE as error:
            self.circuit.record_failure(error)
            raise
        except RedisClusterException as error:
            # redis-py's cluster errors (no node reachable, or the nodes are no cluster) are no
            # `RedisError`: as an unreachable Redis, every Redis error path answers them (503,
            # an error frame), never a 1011.
            unreachable = RedisConnectionError(f"Redis Cluster unavailable: {error}")
            self.circuit.record_failure(unreachable)
            raise unreachable from error
        finally:
            self._turns.release()

    async def execute_command(self, *args: Any, **options: Any) -> Any:
        async with self.guard():
            return await super().execute_command(*args, **options)

    def pipeline(
        self, transaction: Any | None = None, shard_hint: Any | None = None
    ) -> ClusterPipeline:
        """A pipeline; with `transaction`, every key it touches must share one slot (a hash
        tag: app.keyspace)."""
        pipeline = GuardedClusterPipeline(self, transaction)  # type: ignore[abstract]
        pipeline.client = self
        return pipeline

    async def ping_unguarded(self) -> bool:
        """PING (every primary) that ignores the circuit (its probe)."""
        try:
            return bool(await super().execute_command("PING"))
        except RedisClusterException as error:
            raise RedisConnectionError(f"Redis Cluster unavailable: {error}") from error

    async def aclose(self) -> None:
        await self.circuit.close()
        await super().aclose()


def redis_options(settings: Settings) -> dict[str, Any]:
    """Connection options shared by every Redis client of the service (the sync one of the
    scheduler's job store too): bounded connect and reads, no retries."""
    return {
        "socket_timeout": settings.redis_timeout,
        "socket_connect_timeout": settings.redis_timeout,
        "retry": Retry(NoBackoff(), 0),
    }


def sentinel_options(settings: Settings) -> dict[str, Any]:
    """How to reach the sentinels (`REDIS_SENTINEL_PASSWORD`), with the same bounds."""
    return {**redis_options(settings), "password": settings.redis_sentinel_password}


def create_cluster_client(settings: Settings) -> GuardedRedisCluster:
    """A client for the Redis Cluster that `REDIS_CLUSTER_NODES` belong to (it learns the
    others and the slots from them). Connects lazily."""
    client = GuardedRedisCluster(
        startup_nodes=[ClusterNode(host, port) for host, port in settings.redis_cluster_addresses],
        max_in_flight=settings.redis_max_connections,
        wait_timeout=settings.redis_pool_timeout,
        # Per node: every command in flight may go to one node, plus the subscriptions.
        max_connections=settings.redis_max_connections + 4,
        password=settings.redis_password,
        decode_responses=True,
        health_check_interval=30,
        socket_timeout=settings.redis_timeout,
        socket_connect_timeout=settings.redis_timeout,
    )
    client.circuit = RedisCircuit(client.ping_unguarded, settings.redis_probe_seconds)
    return client


def create_redis(settings: Settings) -> SharedRedis | None:
    """A client for `REDIS_URL`, for the master that `REDIS_SENTINELS` name
    `REDIS_SENTINEL_MASTER`, or for the cluster of `REDIS_CLUSTER_NODES`; None when none is set
    (the embedded, single-process mode).

    Connects lazily; see the module docstring for the bounds. Every user of Redis in the
    service (the app, the broker's subscription, the credential limits' storage) shares this
    client's pool, so all of them follow a Sentinel failover.
    """
    if settings.redis_cluster_nodes:
        return create_cluster_client(settings)
    pool: BoundedWaitConnectionPool
    options = {
        "max_connections": settings.redis_max_connections,
        "timeout": settings.redis_pool_timeout,
        "decode_responses": True,
        "health_check_interval": 30,
        **redis_options(settings),
    }
    if settings.redis_sentinels:
        assert settings.redis_sentinel_master is not None  # Settings requires it
        sentinels = Sentinel(
            settings.redis_sentinel_addresses, sentinel_kwargs=sentinel_options(settings)
        )
        pool = BoundedWaitSentinelPool(
            settings.redis_sentinel_master,
            sentinels,
            password=settings.redis_password,
            db=settings.redis_db,
            **options,
        )
    elif settings.redis_url:
        pool = BoundedWaitConnectionPool.from_url(settings.redis_url, **options)
    else:
        return None
    client = GuardedRedis(connection_pool=pool)
    client.circuit = RedisCircuit(client.ping_unguarded, settings.redis_probe_seconds)
    return client


# The app's Redis client, whichever the topology: every Redis user of the service takes it.
SharedRedis: TypeAlias = GuardedRedis | GuardedRedisCluster


def redis_database(redis: SharedRedis) -> int:
    """The database number the client uses (a cluster has only database 0)."""
    if isinstance(redis, GuardedRedisCluster):
        return 0
    return int(redis.connection_pool.connection_kwargs.get("db", 0))


TOPOLOGY_CHECK_SECONDS = 0.3  # per node: the whole check stays under a second


def topology_error(settings: Settings) -> str | None:
    """What is wrong with a reachable Redis topology, in one line, or None: `serve` checks it
    before starting workers (exit 2), so a service pointed at the wrong kind of Redis does not
    start and fail every request. A Redis that cannot be reached is not a configuration error
    (an outage: the service serves, with 503s where it needs Redis) and passes."""
    from redis import Redis as SyncRedis
    from redis import RedisError
    from redis.exceptions import AuthenticationError, ResponseError

    def info_cluster(host: str, port: int, **options: Any) -> bool | None:
        """Whether the node has cluster support on; None if it cannot be reached."""
        return cluster_enabled(
            SyncRedis(
                host=host, port=port, socket_timeout=TOPOLOGY_CHECK_SECONDS,
                socket_connect_timeout=TOPOLOGY_CHECK_SECONDS, **options,
            )
        )  # fmt: skip

    def cluster_enabled(client: SyncRedis) -> bool | None:
        """Whether `client`'s node has cluster support on (None if unreachable); closes it."""
        try:
            return str(client.info("cluster").get("cluster_enabled", 0)) == "1"
        except AuthenticationError:
            raise
        except (RedisConnectionError, RedisTimeoutError, OSError):
            return None
        finally:
            client.close()

    try:
        if settings.redis_cluster_nodes:
            for host, port in settings.redis_cluster_addresses[:3]:
                enabled = info_cluster(host, port, password=settings.redis_password)
                if enabled is False:
                    return (
                        f"REDIS_CLUSTER_NODES: {host}:{port} is a Redis without cluster "
                        "support; use REDIS_URL for one server"
                    )
                if enabled:
                    return None
        elif settings.redis_sentinels:
            for host, port in settings.redis_sentinel_addresses[:3]:
                client = SyncRedis(
                    host=host, port=port, socket_timeout=TOPOLOGY_CHECK_SECONDS,
                    socket_connect_timeout=TOPOLOGY_CHECK_SECONDS,
                    password=settings.redis_sentinel_password,
                )  # fmt: skip
                try:
                    master = client.execute_command(
                        "SENTINEL", "GET-MASTER-ADDR-BY-NAME", settings.redis_sentinel_master
                    )
                except AuthenticationError:
                    raise
                except (RedisConnectionError, RedisTimeoutError, OSError):
                    continue
                except ResponseError:
                    return f"REDIS_SENTINELS: {host}:{port} is not a Redis Sentinel"
                finally:
                    client.close()
                if master is None:
                    return (
                        f"REDIS_SENTINEL_MASTER: the sentinels know no master named "
                        f"{settings.redis_sentinel_master!r}"
                    )
                return None
        elif settings.redis_url:
            client = SyncRedis.from_url(
                settings.redis_url, socket_timeout=TOPOLOGY_CHECK_SECONDS,
                socket_connect_timeout=TOPOLOGY_CHECK_SECONDS,
            )  # fmt: skip
            if cluster_enabled(client):
                return "REDIS_URL: this is a Redis Cluster node; use REDIS_CLUSTER_NODES"
    except AuthenticationError as error:
        return f"Redis refused the credentials: {error}"
    except RedisError as error:
        return f"Redis answered the check with an error: {error}"
    return None
