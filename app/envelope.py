"""The JSON envelope of the Flask original, and the error handlers that put every error in it.

Success (contract §2): `{"code": 0, "data": <payload>, "status": "succeed"}`.
Error: `{"code": <HTTP status>, "msg": "<text>", "request": "<METHOD> <path>", "status": "failed"}`.
Keys are sorted, as the original's were. Messages are for people: a validation error names the
field and the rule; no SQL, no traceback and no exception text ever reaches a client.
"""

from __future__ import annotations

import logging
from typing import Any, cast

from pydantic import ValidationError
from quart import (
    Quart,
    Response,
    current_app,
    has_request_context,
    has_websocket_context,
    request,
    websocket,
)
from quart_schema import RequestSchemaValidationError
from redis.exceptions import RedisError
from sqlalchemy.exc import OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError
from werkzeug.exceptions import HTTPException

from app import state
from app.db import DatabaseTimeoutError, describe_database_error
from app.error_bodies import UNAVAILABLE_SECONDS, envelope_error
from app.errors import (
    ConflictError,
    ForbiddenError,
    IdempotencyMismatchError,
    InvalidReferenceError,
    NotFoundError,
    PreconditionFailedError,
    ServiceError,
)
from app.request_log import current_request_id
from app.validation import field_name

log = logging.getLogger(__name__)

SERVICE_ERROR_STATUS: dict[type[ServiceError], int] = {
    NotFoundError: 404,
    ConflictError: 409,
    InvalidReferenceError: 400,
    ForbiddenError: 403,
    IdempotencyMismatchError: 422,
    PreconditionFailedError: 412,
}


def succeed(data: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    """A success envelope around `data` (any JSON-serialisable value)."""
    response = cast(
        Response, current_app.json.response({"code": 0, "data": data, "status": "succeed"})
    )
    response.status_code = status
    if headers:
        response.headers.update(headers)
    return response


def failed(
    status: int, msg: str, headers: dict[str, str] | list[tuple[str, str]] | None = None
) -> Response:
    """An error envelope: `code` is the HTTP status, `request` is `METHOD path` (no query).
    A refused websocket handshake answers the same way, as `GET path`."""
    origin = (
        f"{request.method} {request.path}"
        if has_request_context()
        else (f"GET {websocket.path}" if has_websocket_context() else "-")
    )
    response = cast(Response, current_app.json.response(envelope_error(status, msg, origin)))
    response.status_code = status
    for key, value in headers.items() if isinstance(headers, dict) else headers or []:
        response.headers.add(key, value)  # add, not set: WWW-Authenticate may repeat
    return response


def describe_validation_error(error: Exception, *, body: bool = True) -> str:
    """One human sentence per invalid field: `"title: String should have at most 120 characters"`.

    Arguments:
        error: the pydantic `ValidationError` (or a `TypeError`/`ValueError`) quart-schema caught.
        body: whether it came from the JSON body (else the query string).
    """
    if body and has_request_context() and not request.is_json:
        return "request body must be JSON (Content-Type: application/json)"
    if not isinstance(error, ValidationError):
        return "request body is not valid" if body else "query string is not valid"
    problems = []
    for item in error.errors(include_url=False, include_input=False):
        field = field_name(tuple(item["loc"]))
        message = str(item["msg"]).removeprefix("Value error, ")  # a validator's own words
        if not field:
            problems.append("request body must be a JSON object" if body else message)
        else:
            problems.append(f"{field}: {message}")
    return "; ".join(dict.fromkeys(problems))


async def _on_schema_validation_error(error: RequestSchemaValidationError) -> Response:
    from quart_schema.validation import QuerystringValidationError

    is_body = not isinstance(error, QuerystringValidationError)
    return failed(400, describe_validation_error(error.validation_error, body=is_body))


async def _on_http_exception(error: HTTPException) -> Response:
    headers = [(key, value) for key, value in error.get_headers() if key.lower() != "content-type"]
    return failed(error.code or 500, error.description or error.name, headers)


def service_error_answer(error: ServiceError) -> tuple[int, list[tuple[str, str]]]:
    """The status of a service error (`SERVICE_ERROR_STATUS`, 400 otherwise) and its headers
    (`Retry-After` when it has one); for every error shape (the scheduler API's too)."""
    status = next(
        (code for kind, code in SERVICE_ERROR_STATUS.items() if isinstance(error, kind)), 400
    )
    headers = [("Retry-After", str(error.retry_after))] if error.retry_after else []
    return status, headers


async def _on_service_error(error: ServiceError) -> Response:
    status, headers = service_error_answer(error)
    return failed(status, error.message, headers)


async def _on_database_unavailable(error: Exception) -> Response:
    # An outage: one line per request; its traceback once a minute per type (TRACEBACKS).
    log.error(
        "database unavailable (request id %s): %s",
        current_request_id(),
        describe_database_error(error),
        exc_info=state.tracebacks().exc_info(error),
    )
    return failed(
        503,
        "the database is unavailable or busy, try again later",
        {"Retry-After": str(UNAVAILABLE_SECONDS)},
    )


async def _on_redis_unavailable(error: Exception) -> Response:
    # One line, no traceback: the circuit breaker logs the outage once (app.redis_client).
    log.warning("redis unavailable (request id %s): %s", current_request_id(), type(error).__name__)
    return failed(
        503,
        "a shared store (Redis) is unavailable, try again later",
        {"Retry-After": str(UNAVAILABLE_SECONDS)},
    )


async def _on_unexpected_error(error: Exception) -> Response:
    request_id = current_request_id()
    log.error(
        "unhandled error (request id %s): %s",
        request_id,
        type(error).__name__,
        exc_info=state.tracebacks().exc_info(error),
    )
    return failed(500, f"internal server error (request id {request_id})")


def register_error_handlers(app: Quart) -> None:
    """Route every error of `app` through the envelope."""
    app.register_error_handler(RequestSchemaValidationError, _on_schema_validation_error)
    app.register_error_handler(HTTPException, _on_http_exception)
    app.register_error_handler(ServiceError, _on_service_error)
    app.register_error_handler(PoolTimeoutError, _on_database_unavailable)
    app.register_error_handler(OperationalError, _on_database_unavailable)
    app.register_error_handler(DatabaseTimeoutError, _on_database_unavailable)
    app.register_error_handler(RedisError, _on_redis_unavailable)
    app.register_error_handler(Exception, _on_unexpected_error)
