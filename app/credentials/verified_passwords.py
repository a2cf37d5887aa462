"""Passwords a worker verified recently (`VerifiedPasswords`), so Basic auth on every request
does not cost an Argon2 run each time (app.auth.identity asks it first)."""

from __future__ import annotations

import hashlib
import hmac

from cachetools import TTLCache

from app.models import name_key

VERIFIED_PASSWORDS_MAX = 4096
VERIFIED_PASSWORDS_SECONDS = 300


class VerifiedPasswords:
    """Passwords this worker verified recently, so an API client sending Basic credentials on
    every request costs one Argon2 run per `VERIFIED_PASSWORDS_SECONDS`, not one per request.

    Holds HMAC-SHA256(SECRET_KEY, password) under the name, with the password hash it matched:
    a changed password (new hash) no longer matches, and no password is kept in memory.
    """

    def __init__(self, secret_key: str) -> None:
        self._key = secret_key.encode()
        self._entries: TTLCache[tuple[str, bytes], str] = TTLCache(
            maxsize=VERIFIED_PASSWORDS_MAX, ttl=VERIFIED_PASSWORDS_SECONDS
        )

    def _entry(self, name: str, password: str) -> tuple[str, bytes]:
        return name_key(name), hmac.new(self._key, password.encode(), hashlib.sha256).digest()

    def matches(self, name: str, password: str, password_hash: str | None) -> bool:
        return (
            password_hash is not None
            and self._entries.get(self._entry(name, password)) == password_hash
        )

    def remember(self, name: str, password: str, password_hash: str) -> None:
        self._entries[self._entry(name, password)] = password_hash
