"""Credential checks without a database round trip, revocable on every worker at once.

A bearer token or session check normally reads the credential and its user from the database.
Each worker keeps the answer (the user, the credential's expiry) for at most `max_age` seconds;
a kept answer is used only while the deployment-wide *credentials epoch* in Redis is the one it
was read under. Every change that can end or alter a credential (a revoked token or session,
a user's new password, role or name, a deleted user) advances the epoch after its commit
(`Database.session` calls `advance` when `mark_changed` flagged the session), so the next
request on any worker reads the database again. A check costs one Redis GET (shared by the
checks of one loop turn) instead of a database query.

Failure modes (docs/security.md): without Redis there is no cache (every check reads the
database). While Redis fails, checks read the database and the worker drops what it kept. A
change committed while Redis cannot take the epoch's increment reaches a worker that kept the
credential and saw no failure within `max_age` seconds (`CREDENTIAL_CACHE_SECONDS`).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from cachetools import TTLCache
from redis.exceptions import RedisError
from sqlalchemy import event, inspect
from sqlalchemy.orm import Session, UOWTransaction

from app.batching import SharedReads
from app.models import ApiToken, User
from app.services.permissions import Actor

if TYPE_CHECKING:
    from sqlalchemy.orm import ORMExecuteState

    from app.redis_client import SharedRedis

log = logging.getLogger(__name__)

CREDENTIALS_CHANGED = "credentials_changed"  # the Session.info flag
EPOCH_KEY = "credentials-epoch"
MAX_ENTRIES = 10_000


@dataclass(frozen=True, slots=True)
class KeptCredential:
    actor: Actor
    expires_at: float  # epoch seconds
    epoch: str


class CredentialCache:
    """Per-worker answers of credential checks, valid while Redis' credentials epoch holds.

    Arguments:
        redis: the service's Redis client (the epoch lives there).
        key_prefix: `REDIS_KEY_PREFIX`, so deployments sharing a Redis server stay apart.
        max_age: seconds an answer may be kept at most (`CREDENTIAL_CACHE_SECONDS`).
    """

    def __init__(self, redis: SharedRedis, *, key_prefix: str, max_age: float) -> None:
        self.redis = redis
        self.key = f"{key_prefix}{EPOCH_KEY}"
        self.kept: TTLCache[tuple[str, str], KeptCredential] = TTLCache(MAX_ENTRIES, max_age)
        self._epoch_reads: SharedReads[Any] = SharedReads(self.redis.get)

    async def current_epoch(self) -> str | None:
        """The epoch now, or None when Redis fails (then nothing kept is trusted).

        The checks begun in one loop turn share one GET, sent after all of them asked: each
        still sees every change committed before it asked, and a burst costs one round trip.
        """
        try:
            value = await self._epoch_reads.read(self.key)
        except (RedisError, OSError, TimeoutError) as error:
            self.kept.clear()
            log.debug("credential cache bypassed: %s", type(error).__name__)
            return None
        return str(value) if value is not None else "0"

    def lookup(self, digest: str, kind: str, epoch: str) -> Actor | None:
        """The kept owner of credential `digest` of `kind`, if read under `epoch` and unexpired."""
        kept = self.kept.get((digest, kind))
        if kept is None or kept.epoch != epoch or kept.expires_at <= time.time():
            return None
        return kept.actor

    def keep(self, digest: str, kind: str, actor: Actor, expires_at: float, epoch: str) -> None:
        self.kept[(digest, kind)] = KeptCredential(actor, expires_at, epoch)

    async def advance(self) -> None:
        """Make every worker's kept answers stale (after a committed credential change)."""
        self.kept.clear()
        try:
            await self.redis.incr(self.key)
        except (RedisError, OSError, TimeoutError) as error:
            log.warning(
                "credentials epoch not advanced (%s): other workers may accept a revoked "
                "credential for up to CREDENTIAL_CACHE_SECONDS",
                type(error).__name__,
            )


def mark_changed(session: Session) -> None:
    session.info[CREDENTIALS_CHANGED] = True


# The user columns a kept answer holds or depends on (`last_seen`, written by the database
# presence backend, is not one of them).
CREDENTIAL_COLUMNS = ("name", "role", "password_hash")


def watch_credential_changes(session_class: type[Session]) -> None:
    """Flag the sessions of `session_class` (a `Database`'s own class, so another app in this
    process is not watched) that end or change a credential (`CREDENTIALS_CHANGED`). Call it
    once per class."""
    event.listen(session_class, "do_orm_execute", _flag_bulk_deletes)
    event.listen(session_class, "before_flush", _flag_changed_rows)


def _flag_bulk_deletes(state: ORMExecuteState) -> None:
    """`delete(ApiToken)` and `delete(User)` statements end credentials."""
    mapper = state.bind_mapper
    if state.is_delete and mapper is not None and mapper.class_ in (ApiToken, User):
        mark_changed(state.session)


def _flag_changed_rows(session: Session, _flush: UOWTransaction, _instances: Any) -> None:
    """A deleted token or user, or a user's new name, role or password, changes credentials."""
    for instance in session.deleted:
        if isinstance(instance, (ApiToken, User)):
            mark_changed(session)
            return
    for instance in session.dirty:
        if isinstance(instance, User):
            attributes = inspect(instance).attrs
            if any(attributes[name].history.has_changes() for name in CREDENTIAL_COLUMNS):
                mark_changed(session)
                return
