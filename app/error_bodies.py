"""Error answers in one place: the two shapes clients of this service read, and the one
`Retry-After` policy. Admission (before Quart), the envelope's error handlers and the scheduler
API all answer through these.

Shapes:
- the envelope (contract §2): `{"code": <status>, "msg", "request": "<METHOD> <path>",
  "status": "failed"}`;
- under the scheduler API's prefix (`SCHEDULER_API_PREFIX`), Flask-APScheduler's
  `{"error_message"}`.

`Retry-After` (RFC 9110 §10.2.3), by why the request was not served:
- `BUSY_SECONDS` (1): the service turned it away for load it sheds within a second (admission's
  queue full or timed out, too many bodies arriving from one address) or a retry that came while
  the first request with its Idempotency-Key still runs;
- `UNAVAILABLE_SECONDS` (5): a dependency is down (MySQL, Redis): the pools and the Redis circuit
  notice its return within seconds, and a client that retries sooner only adds load;
- a rate limit (429) says when its window frees a slot (app.credentials.rate_limit), not a constant.
"""

from __future__ import annotations

from typing import Any

BUSY_SECONDS = 1
UNAVAILABLE_SECONDS = 5


def envelope_error(status: int, message: str, request: str) -> dict[str, Any]:
    """The error envelope; `request` is `METHOD path` (no query string), or `-` outside one."""
    return {"code": status, "msg": message, "request": request, "status": "failed"}


def scheduler_error(message: str) -> dict[str, Any]:
    """Flask-APScheduler's error body."""
    return {"error_message": message}


def under_prefix(path: str, prefix: str) -> bool:
    """Whether `path` is the scheduler API's (`prefix` itself or below it)."""
    return path == prefix or path.startswith(prefix + "/")


def error_body(
    status: int, message: str, *, method: str, path: str, scheduler_prefix: str
) -> dict[str, Any]:
    """The error in the shape the route at `path` answers with."""
    if under_prefix(path, scheduler_prefix):
        return scheduler_error(message)
    return envelope_error(status, message, f"{method} {path}")
