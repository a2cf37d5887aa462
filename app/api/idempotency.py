"""`Idempotency-Key` on the write routes: a retried write runs once, and every retry gets the
first answer (draft-ietf-httpapi-idempotency-key-header; Stripe's API where the draft is silent;
docs/api.md "Safe retries").

A route opts in with `@idempotent` and commits its unit of work with `commit_write()`, which
stores the answer in the write's own transaction. Without the header a route behaves as before.

- The same key and the same request (method, path with query, body): the stored answer, byte
  for byte, with `Idempotent-Replayed: true`; nothing runs again.
- The same key with another request: 422. While the first request runs: 409, `Retry-After: 1`.
- A key is 1 to 255 characters of `A-Z a-z 0-9 - _ . : ~ + / =` (a UUID, base64); else 400.
- Keys belong to the caller: the authenticated user, or all anonymous callers together (keys
  must then be unguessable, e.g. UUIDv4).
- Only 2xx answers are stored, for `IDEMPOTENCY_TTL_SECONDS` (24 h); after an error answer the
  key is free again and a retry runs (the write did not commit).
"""

from __future__ import annotations

import asyncio
import hashlib
import re
from collections.abc import Awaitable, Callable
from contextvars import ContextVar
from dataclasses import dataclass
from functools import wraps
from typing import Any, TypeVar, cast

from pydantic import BaseModel, Field
from quart import Response, request
from sqlalchemy.ext.asyncio import AsyncSession
from werkzeug.exceptions import BadRequest

from app.api.openapi import add_header_model
from app.auth.identity import current_identity
from app.services.idempotency import Claim, StoredAnswer
from app.state import idempotency

View = TypeVar("View", bound=Callable[..., Awaitable[Response]])

HEADER = "Idempotency-Key"
REPLAYED_HEADER = "Idempotent-Replayed"  # Stripe's name
KEY_PATTERN = r"^[A-Za-z0-9\-_.:~+/=]{1,255}$"
_KEY = re.compile(KEY_PATTERN)
ANONYMOUS = "anonymous"
# The headers a replay repeats; the rest (Date, request ids, cookies) belong to each answer.
REPLAYED_HEADERS = ("Content-Type", "Location", "ETag", "X-Total-Count")


class IdempotencyHeaders(BaseModel):
    """The request header, as OpenAPI documents it."""

    idempotency_key: str | None = Field(
        default=None,
        description=(
            "Makes a retry of this write safe: the first request runs and its 2xx answer is "
            "stored for 24 h; a retry with the same key and request gets that answer with "
            "`Idempotent-Replayed: true`. The same key with another request: 422; while the "
            "first runs: 409 with Retry-After."
        ),
        pattern=KEY_PATTERN,
        max_length=255,
    )


@dataclass(slots=True)
class _Held:
    claim: Claim
    stored: bool = False


_held: ContextVar[_Held | None] = ContextVar("idempotency_claim", default=None)


def idempotent(view: View) -> View:
    """Make `view` (a write route) honour `Idempotency-Key`; see the module. Raises
    `BadRequest` (400) for a malformed key, `IdempotencyMismatchError` (422) and
    `IdempotencyInProgressError` (409) from the store."""

    @wraps(view)
    async def wrapper(*args: Any, **kwargs: Any) -> Response:
        key = request.headers.get(HEADER)
        if key is None:
            return await view(*args, **kwargs)
        if not _KEY.fullmatch(key):
            raise BadRequest(
                f"{HEADER}: must be 1 to 255 characters of A-Z, a-z, 0-9 and - _ . : ~ + / ="
            )
        identity = current_identity()
        principal = identity.user_id if identity is not None else ANONYMOUS
        body = cast(bytes, await request.get_data(as_text=False))
        fingerprint = request_fingerprint(request.method, request.path, request.query_string, body)
        outcome = await idempotency().claim(principal, key, fingerprint)
        if isinstance(outcome, StoredAnswer):
            return _replay(outcome)
        held = _Held(outcome)
        token = _held.set(held)
        try:
            response = await view(*args, **kwargs)
        except asyncio.CancelledError:
            raise  # the client is gone; the lease frees the key
        except BaseException:
            await idempotency().release(outcome)
            raise
        finally:
            _held.reset(token)
        if not held.stored:
            if 200 <= response.status_code < 300:
                # A write outside this database (the scheduler's job store): stored after it.
                await idempotency().complete_alone(outcome, await _answer(response))
            else:
                await idempotency().release(outcome)
        return response

    return add_header_model(cast(View, wrapper), IdempotencyHeaders)


async def commit_write(session: AsyncSession, response: Response) -> Response:
    """Commit `session`'s write; with a held `Idempotency-Key` and a 2xx `response`, the answer
    is stored in the same transaction. Returns `response`. Raises what the COMMIT raises (the
    write then did not commit, or its answer is stored and a retry replays it)."""
    held = _held.get()
    if held is not None and 200 <= response.status_code < 300:
        await idempotency().complete(session, held.claim, await _answer(response))
        held.stored = True
    await session.commit()
    return response


def request_fingerprint(method: str, path: str, query: bytes, body: bytes) -> str:
    """SHA-256 (hex) of what makes two requests the same request (draft §2.2: "the same
    payload"): the method, the path, the query string and the body's bytes."""
    digest = hashlib.sha256()
    for part in (method.encode(), path.encode(), query, body):
        digest.update(len(part).to_bytes(8, "big"))
        digest.update(part)
    return digest.hexdigest()


async def _answer(response: Response) -> StoredAnswer:
    headers = [(name, value) for name in REPLAYED_HEADERS if (value := response.headers.get(name))]
    return StoredAnswer(response.status_code, headers, await response.get_data(as_text=False))


def _replay(answer: StoredAnswer) -> Response:
    response = Response(answer.body, status=answer.status)
    response.headers.remove("Content-Type")
    for name, value in answer.headers:
        response.headers[name] = value
    response.headers[REPLAYED_HEADER] = "true"
    return response
