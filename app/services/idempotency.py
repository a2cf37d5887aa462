"""The store of `Idempotency-Key` records (table `idempotency_records`).

A keyed write goes through three steps (draft-ietf-httpapi-idempotency-key-header, and
Stripe's behaviour where the draft is silent):

1. `claim()`, in a short transaction of its own, before the write runs: a new key is inserted
   as "in progress" with a lock token and a lease; a key whose answer is stored gives that
   answer (`StoredAnswer`), or `IdempotencyMismatchError` when the request differs; a key in
   progress gives `IdempotencyInProgressError`. A lease that ran out (its worker died) is taken
   over, which is safe: the answer is only ever stored with the write (step 2).
2. `complete()`, inside the write's own transaction, just before its COMMIT: the answer is
   stored under the claim's lock token. The write and its answer commit together or not at
   all; a claim taken over meanwhile makes `complete()` raise, and the write is rolled back.
3. `release()` when the write failed (an error answer), so a retry runs at once: error
   answers are not stored.
"""

from __future__ import annotations

import contextlib
import json
import logging
import secrets
import time
from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy import ColumnElement, and_, delete, insert, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from app.db import Database
from app.errors import IdempotencyInProgressError, IdempotencyMismatchError
from app.models import IdempotencyRecord, utcnow
from app.services.rows import rowcount

log = logging.getLogger(__name__)

PURGE_EVERY_SECONDS = 60.0
RELEASE_SECONDS = 1.0  # a release is best effort: a lease that runs out frees the key anyway


@dataclass(frozen=True, slots=True)
class StoredAnswer:
    """The answer stored for a key: status, the headers worth replaying, the body's bytes."""

    status: int
    headers: list[tuple[str, str]]
    body: bytes


@dataclass(frozen=True, slots=True)
class Claim:
    """A key this request holds while its write runs."""

    principal: str
    key: str
    fingerprint: str
    token: str


def _where(principal: str, key: str) -> ColumnElement[bool]:
    return and_(IdempotencyRecord.principal == principal, IdempotencyRecord.idempotency_key == key)


class IdempotencyStore:
    """Claims, completes and releases keys in `database`.

    Arguments:
        database: the worker's database.
        ttl_seconds: how long a stored answer is replayed (`IDEMPOTENCY_TTL_SECONDS`).
        lease_seconds: how long a claim holds its key before a retry may take it over
            (`IDEMPOTENCY_LEASE_SECONDS`).
    """

    def __init__(self, database: Database, *, ttl_seconds: float, lease_seconds: float) -> None:
        self.database = database
        self.ttl = timedelta(seconds=ttl_seconds)
        self.lease = timedelta(seconds=lease_seconds)
        self._purged_at: float | None = None

    async def claim(self, principal: str, key: str, fingerprint: str) -> Claim | StoredAnswer:
        """Hold `key` for this request, or give the answer stored for it.

        Raises `IdempotencyMismatchError` when the key was used with another fingerprint,
        `IdempotencyInProgressError` while another request holds it, and the database's
        errors (a 503 before anything ran).
        """
        await self._purge_now_and_then()
        claim = Claim(principal, key, fingerprint, secrets.token_hex(16))
        async with self.database.session() as session:
            now = utcnow()
            try:
                await session.execute(
                    insert(IdempotencyRecord).values(
                        principal=principal,
                        idempotency_key=key,
                        fingerprint=fingerprint,
                        lock_token=claim.token,
                        locked_until=now + self.lease,
                        created_at=now,
                        expires_at=now + self.ttl,
                    )
                )
                await session.commit()
                return claim
            except IntegrityError:
                await session.rollback()
            record = await session.scalar(select(IdempotencyRecord).where(_where(principal, key)))
            if record is None:  # expired and purged meanwhile: the retry's retry inserts it
                raise IdempotencyInProgressError("Idempotency-Key: a request with it is running")
            if record.expires_at <= now:
                return await self._take_over(session, record, claim, expired=True)
            if record.fingerprint != fingerprint:
                raise IdempotencyMismatchError(
                    "Idempotency-Key: already used for another request (method, path or body)"
                )
            if record.status_code is not None:
                return StoredAnswer(
                    record.status_code,
                    [tuple(pair) for pair in json.loads(record.response_headers or "[]")],
                    (record.response_body or "").encode(),
                )
            if record.locked_until is not None and record.locked_until > now:
                raise IdempotencyInProgressError("Idempotency-Key: a request with it is running")
            return await self._take_over(session, record, claim, expired=False)

    async def _take_over(
        self, session: AsyncSession, record: IdempotencyRecord, claim: Claim, *, expired: bool
    ) -> Claim:
        # Only if the record is still what was read: two retries cannot both take it over.
        now = utcnow()
        condition = (
            IdempotencyRecord.expires_at <= now
            if expired
            else (IdempotencyRecord.status_code.is_(None) & (IdempotencyRecord.locked_until <= now))
        )
        result = await session.execute(
            update(IdempotencyRecord)
            .where(_where(record.principal, record.idempotency_key), condition)
            .values(
                fingerprint=claim.fingerprint,
                lock_token=claim.token,
                locked_until=now + self.lease,
                status_code=None,
                response_headers=None,
                response_body=None,
                created_at=now,
                expires_at=now + self.ttl,
            )
        )
        if rowcount(result) != 1:
            await session.rollback()
            raise IdempotencyInProgressError("Idempotency-Key: a request with it is running")
        await session.commit()
        return claim

    async def complete(self, session: AsyncSession, claim: Claim, answer: StoredAnswer) -> None:
        """Store `answer` under `claim`, in `session`'s transaction (the caller commits it with
        the write). Raises `IdempotencyInProgressError` when the claim was taken over (its
        lease ran out): the caller's transaction must then roll back."""
        result = await session.execute(
            update(IdempotencyRecord)
            .where(
                _where(claim.principal, claim.key),
                IdempotencyRecord.lock_token == claim.token,
                IdempotencyRecord.status_code.is_(None),
            )
            .values(
                status_code=answer.status,
                response_headers=json.dumps(answer.headers),
                response_body=answer.body.decode(),
                lock_token=None,
                locked_until=None,
            )
        )
        if rowcount(result) != 1:
            raise IdempotencyInProgressError(
                "Idempotency-Key: the request took longer than its lease and a retry took over"
            )

    async def complete_alone(self, claim: Claim, answer: StoredAnswer) -> None:
        """`complete()` in a transaction of its own, for a write that is not in this database
        (the scheduler's job store)."""
        async with self.database.session() as session:
            await self.complete(session, claim, answer)
            await session.commit()

    async def release(self, claim: Claim) -> None:
        """Give the key up (the write failed), so that a retry runs now; best effort, within
        `RELEASE_SECONDS`: if the database cannot be reached the lease frees the key later."""
        try:
            async with self.database.session(RELEASE_SECONDS) as session:
                await session.execute(
                    delete(IdempotencyRecord).where(
                        _where(claim.principal, claim.key),
                        IdempotencyRecord.lock_token == claim.token,
                        IdempotencyRecord.status_code.is_(None),
                    )
                )
                await session.commit()
        except Exception as error:  # the answer already given must not change
            log.warning(
                "Idempotency-Key not released (%s); its lease frees it", type(error).__name__
            )

    async def _purge_now_and_then(self) -> None:
        now = time.monotonic()
        if self._purged_at is not None and now - self._purged_at < PURGE_EVERY_SECONDS:
            return
        self._purged_at = now
        with contextlib.suppress(Exception):  # a purge that failed waits for the next minute
            async with self.database.session(RELEASE_SECONDS) as session:
                await session.execute(
                    delete(IdempotencyRecord).where(IdempotencyRecord.expires_at <= utcnow())
                )
                await session.commit()
