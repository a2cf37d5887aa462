"""The one limiter of credential checks: failed attempts per client address and per account.

Every password check (Basic on any route, `POST /login`, hence `POST /api/v1/tokens`) and every
bearer-token check (the `Authorization` header or a websocket's `?token=`) reports here. The
counters are moving windows of the `limits` library, in Redis when `REDIS_URL` is set (shared by
every worker and container, under the deployment's key prefix), otherwise in this process.

- Only **failures** are counted: a right password never uses the budget.
- A password check asks `ensure_allowed` **before** Argon2 runs, so a flood of guesses past the
  limit costs one Redis round trip each and no hashing. Within one worker the checks of one
  address, and of one account, run one at a time, so concurrent guesses cannot all pass the
  test before the first failure is counted: across W workers at most limit + W - 1 failures
  get through in a window.
- A bearer token is 256 random bits: it is looked up first (one indexed query), and only a
  failed look-up is counted (per address), so a good token costs no limiter round trip.
- If the counter store fails, the limit is not enforced (logged): logging in stays possible
  while Redis is down.
- Answers to a request whose password was checked, and every 429 of this limiter, carry
  `RateLimit-Policy` and `RateLimit` (draft-ietf-httpapi-ratelimit-headers): the two policies
  ("address", "account") with their quota `q` of failures per window `w` seconds, and what is
  left of each, `r`, until its window resets in `t` seconds. A good bearer token is not counted
  and its answers carry neither (docs/security.md).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
import weakref
from collections.abc import AsyncIterator
from typing import Any, cast

from limits import RateLimitItem, parse
from limits.aio.storage import MemoryStorage, RedisClusterStorage, RedisStorage, Storage
from limits.aio.strategies import MovingWindowRateLimiter
from quart import has_request_context, request
from werkzeug.exceptions import TooManyRequests

from app.models import name_key
from app.redis_client import UNREACHABLE, GuardedRedisCluster, SharedRedis
from app.settings import Settings

log = logging.getLogger(__name__)

ADDRESS_SCOPE = "address"
ACCOUNT_SCOPE = "account"
# The ASGI scope key of a request's RateLimit header pairs, sent by app.request_hooks.
RATE_LIMIT_SCOPE_KEY = "app.rate_limit_headers"


class LimitState:
    """What a request's credential checks left of each policy: rendered as the two headers."""

    def __init__(self, policy: bytes) -> None:
        self.policy = policy
        self.left: dict[str, tuple[int, int]] = {}  # scope -> (remaining, reset seconds)

    def headers(self) -> list[tuple[bytes, bytes]]:
        items = ", ".join(f'"{scope}";r={r};t={t}' for scope, (r, t) in self.left.items())
        return [(b"ratelimit-policy", self.policy), (b"ratelimit", items.encode())]


def _request_limit_state(policy: bytes) -> LimitState | None:
    """This HTTP request's `LimitState` (made on first use), or None outside one."""
    if not has_request_context():
        return None
    scope = cast(dict[str, Any], request.scope)
    state = scope.get(RATE_LIMIT_SCOPE_KEY)
    if state is None:
        state = scope[RATE_LIMIT_SCOPE_KEY] = LimitState(policy)
    return cast(LimitState, state)


class TooManyAttempts(TooManyRequests):
    """429 with `Retry-After` (seconds), answered in the envelope."""

    def __init__(self, retry_after: int, what: str) -> None:
        super().__init__(
            f"too many failed sign-in attempts for this {what}; retry after {retry_after} s"
        )
        self.retry_after_seconds = retry_after

    def get_headers(self, *args: Any, **kwargs: Any) -> list[tuple[str, str]]:
        return [
            *super().get_headers(*args, **kwargs),
            ("Retry-After", str(self.retry_after_seconds)),
        ]


class CredentialGuard:
    """Counts failed credential checks per client address (`AUTH_ADDRESS_RATE_LIMIT`) and per
    account name (`AUTH_RATE_LIMIT`, case-insensitive as names are)."""

    def __init__(self, settings: Settings, redis: SharedRedis | None) -> None:
        self.per_account: RateLimitItem = parse(settings.auth_rate_limit)
        self.per_address: RateLimitItem = parse(settings.auth_address_rate_limit)
        self.policy = ", ".join(
            f'"{scope}";q={item.amount};w={item.get_expiry()}'
            for scope, item in (
                (ADDRESS_SCOPE, self.per_address),
                (ACCOUNT_SCOPE, self.per_account),
            )
        ).encode()
        self.storage: Storage
        self.redis = redis
        key_prefix = f"{settings.redis_key_prefix}auth-failures"
        if isinstance(redis, GuardedRedisCluster):
            # `limits`' own cluster client (each counter is one key: one slot per script).
            nodes = ",".join(f"{host}:{port}" for host, port in settings.redis_cluster_addresses)
            options: dict[str, Any] = {
                "socket_timeout": settings.redis_timeout,
                "socket_connect_timeout": settings.redis_timeout,
            }
            if settings.redis_password is not None:
                options["password"] = settings.redis_password
            self.storage = RedisClusterStorage(
                f"async+redis+cluster://{nodes}",
                implementation="redispy",
                key_prefix=key_prefix,
                **options,
            )
        elif redis is not None:
            # Shares the worker's connection pool: closed with the app's Redis client.
            self.storage = RedisStorage(
                "async+redis://",
                implementation="redispy",
                key_prefix=key_prefix,
                connection_pool=redis.connection_pool,  # type: ignore[arg-type]
            )
        else:
            self.storage = MemoryStorage()
        self.limiter = MovingWindowRateLimiter(self.storage)
        # Held while a password is checked; dropped when nobody holds them (no growth).
        self._locks: weakref.WeakValueDictionary[str, asyncio.Lock] = weakref.WeakValueDictionary()

    def _keys(self, address: str, account: str | None) -> list[tuple[RateLimitItem, str, str]]:
        keys = [(self.per_address, ADDRESS_SCOPE, address)]
        if account:
            keys.append((self.per_account, ACCOUNT_SCOPE, name_key(account)))
        return keys

    def _lock(self, key: str) -> asyncio.Lock:
        lock = self._locks.get(key)
        if lock is None:
            lock = self._locks[key] = asyncio.Lock()
        return lock

    @contextlib.asynccontextmanager
    async def password_check(self, address: str, account: str) -> AsyncIterator[None]:
        """Serialise this worker's checks of `address` and of `account`, and refuse one that
        is over a limit. Raises `TooManyAttempts` before the body runs."""
        # One order for every caller (address, then account): no deadlock.
        address_lock = self._lock(f"{ADDRESS_SCOPE}/{address}")
        account_lock = self._lock(f"{ACCOUNT_SCOPE}/{name_key(account)}")
        async with address_lock, account_lock:
            await self.ensure_allowed(address, account)
            yield

    def _store_down(self) -> bool:
        """Whether the worker's Redis circuit is open: then the limit is skipped at once."""
        return self.redis is not None and self.redis.circuit.is_open

    def _store_failed(self, error: Exception, what: str) -> None:
        if self.redis is not None and isinstance(error, UNREACHABLE):
            self.redis.circuit.record_failure(error)
        log.warning("credential limiter store failed (%s); not %s", type(error).__name__, what)

    async def ensure_allowed(self, address: str, account: str | None = None) -> None:
        """Raise `TooManyAttempts` if `address` or `account` has no failures left."""
        if self._store_down():
            return
        state = _request_limit_state(self.policy)
        for item, scope, key in self._keys(address, account):
            try:
                stats = await self.limiter.get_window_stats(item, scope, key)
            except Exception as error:
                self._store_failed(error, "enforcing")
                return
            reset = max(1, math.ceil(stats.reset_time - time.time()))
            if state is not None:
                state.left[scope] = (max(0, stats.remaining), reset)
            if stats.remaining <= 0:
                raise TooManyAttempts(reset, scope)

    async def record_failure(self, address: str, account: str | None = None) -> None:
        """Count one failed check against `address` (and `account`)."""
        if self._store_down():
            return
        state = _request_limit_state(self.policy)
        for item, scope, key in self._keys(address, account):
            try:
                await self.limiter.hit(item, scope, key)
            except Exception as error:
                self._store_failed(error, "counting")
                return
            if state is not None and scope in state.left:
                remaining, reset = state.left[scope]
                state.left[scope] = (max(0, remaining - 1), reset)
