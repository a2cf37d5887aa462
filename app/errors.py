"""Domain errors raised by the services. They carry no HTTP: `app.envelope` maps each to a status."""

from app.error_bodies import BUSY_SECONDS


class ServiceError(Exception):
    """Base of the errors a service raises on purpose; `message` is shown to the client, and
    `retry_after` (seconds), when set, is sent as `Retry-After`."""

    retry_after: int | None = None

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class NotFoundError(ServiceError):
    """The object named in the path does not exist (HTTP 404)."""


class ConflictError(ServiceError):
    """The change would break a uniqueness rule, e.g. a taken user name (HTTP 409)."""


class InvalidReferenceError(ServiceError):
    """A body field names an object that does not exist, e.g. an unknown tag id (HTTP 400)."""


class ForbiddenError(ServiceError):
    """The caller is known but may not do this, e.g. edit another user's blog (HTTP 403)."""


class IdempotencyInProgressError(ConflictError):
    """The first request with this Idempotency-Key has not finished (HTTP 409, Retry-After:
    `BUSY_SECONDS`)."""

    retry_after = BUSY_SECONDS


class IdempotencyMismatchError(ServiceError):
    """The Idempotency-Key was used for another request: another method, path or body
    (HTTP 422, draft-ietf-httpapi-idempotency-key-header §2.7)."""


class PreconditionFailedError(ServiceError):
    """The write named a version (If-Match) that is no longer the current one (HTTP 412,
    RFC 9110 §13.1.1)."""


class ChangedMeanwhileError(ConflictError):
    """Another request changed the object between this one's read and its write (HTTP 409):
    the write is not applied; read the object again and retry."""
