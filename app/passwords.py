"""Argon2id password hashing (argon2-cffi) with OWASP's parameters: 19 MiB, 2 passes, 1 lane.

Hashing costs tens of milliseconds of CPU, so it runs in a worker thread, never on the loop.
"""

from __future__ import annotations

import asyncio
import functools

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

# OWASP Password Storage Cheat Sheet: Argon2id, m=19456 KiB, t=2, p=1.
HASHER = PasswordHasher(time_cost=2, memory_cost=19456, parallelism=1)


@functools.cache
def _dummy_hash() -> str:
    """Verified when the user does not exist, so a wrong name costs as long as a wrong
    password. Made at its first use, on the thread of that verification, not at import: an
    Argon2 hash is 40 ms of CPU, which every `python -m app` process paid (the supervisor and
    the database commands never verify a password)."""
    return HASHER.hash("no user has this password")


async def hash_password(password: str) -> str:
    """The Argon2id PHC string of `password`."""
    return await asyncio.to_thread(HASHER.hash, password)


async def verify_password(password_hash: str | None, password: str) -> bool:
    """Whether `password` matches `password_hash`; False for a None hash (no password set),
    after the same amount of work."""
    try:
        return await asyncio.to_thread(_verify, password_hash, password) and (
            password_hash is not None
        )
    except (VerificationError, InvalidHashError):
        return False


def _verify(password_hash: str | None, password: str) -> bool:
    return HASHER.verify(password_hash or _dummy_hash(), password)


def needs_rehash(password_hash: str) -> bool:
    """Whether `password_hash` was made with other parameters than `HASHER`'s (older, weaker
    or stronger): hash the password again at the next successful login (argon2-cffi's
    `check_needs_rehash`)."""
    try:
        return HASHER.check_needs_rehash(password_hash)
    except InvalidHashError:
        return False
