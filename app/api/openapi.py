"""OpenAPI documentation of the /api/v1 responses, in the envelope's shapes (contract §1).

These models describe what the routes send; they are not used to build responses (the
presenters do, without per-row pydantic work). `responds()` documents a route's success and
every error status it can answer, each as the error envelope.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from http import HTTPStatus
from typing import Any, Generic, Literal, TypeVar

from pydantic import BaseModel
from quart_schema import document_response, security_scheme
from quart_schema.extension import SecuritySchemeInput
from quart_schema.openapi import APIKeySecurityScheme, HttpSecurityScheme, OpenAPIProvider
from quart_schema.validation import QUART_SCHEMA_HEADERS_ATTRIBUTE

Data = TypeVar("Data")
View = TypeVar("View", bound=Callable[..., Any])

# Basic (name and password), a bearer token from POST /api/v1/tokens, or the cookie of a
# POST /login session (whose writes also need a same-origin request or the CSRF token).
SECURITY_SCHEMES: dict[str, SecuritySchemeInput] = {
    "basic": HttpSecurityScheme(scheme="basic"),
    "bearer": HttpSecurityScheme(scheme="bearer"),
    "session": APIKeySecurityScheme(name="session", in_="cookie"),
}
ANY_CREDENTIALS: list[dict[str, list[str]]] = [{"basic": []}, {"bearer": []}, {"session": []}]

# Any route may answer these: a malformed request, a wrong credential (checked on every route),
# too many failed credential checks, a dependency that is down (with Retry-After).
ALWAYS = (400, 401, 429, 503)
WRITE = (403, 413)  # not allowed for this user; a body over MAX_CONTENT_LENGTH
# With an Idempotency-Key (app.api.idempotency): the first request still runs; the key was used
# for another request.
KEYED = (409, 422)
# With If-Match (app.api.conditional): the object changed since that ETag; no If-Match where
# REQUIRE_IF_MATCH requires one.
CONDITIONAL = (412, 428)


class Succeed(BaseModel, Generic[Data]):
    """`{"code": 0, "data": …, "status": "succeed"}`."""

    code: Literal[0]
    data: Data
    status: Literal["succeed"]


class Failed(BaseModel):
    """`{"code": <HTTP status>, "msg": "<field>: <problem>", "request": "<METHOD> <path>",
    "status": "failed"}`."""

    code: int
    msg: str
    request: str
    status: Literal["failed"]


class UserOut(BaseModel):
    id: str
    name: str
    role: Literal[0, 1]


class TagOut(BaseModel):
    id: str
    name: str


class BlogOut(BaseModel):
    """Times are "YYYY-MM-DD HH:MM:SS" in DISPLAY_TIMEZONE."""

    id: str
    title: str
    context: str
    owner: UserOut
    tags: list[TagOut]
    create_time: str | None
    modify_time: str | None


class UserWithBlogs(UserOut):
    blogs: list[BlogOut]


class TagWithBlogs(TagOut):
    blogs: list[BlogOut]


class OnlineUser(BaseModel):
    id: str
    name: str
    last_seen: str | None


class OnlineList(BaseModel):
    count: int
    minutes: int
    users: list[OnlineUser]


class HistoryPoint(BaseModel):
    time: str | None
    count: int


class OnlineHistory(BaseModel):
    hours: int
    points: list[HistoryPoint]


class UserOnline(BaseModel):
    id: str
    online: bool
    last_seen: str | None


class IssuedToken(BaseModel):
    token: str
    expires_in: int


class RevokedSessions(BaseModel):
    revoked: int


class NoContent(BaseModel):
    """No body (204)."""


# Shared error responses (components/responses), by status: every operation refers to these
# rather than inlining the error envelope (client generators then make one typed error model).
ERROR_RESPONSE_NAMES = {
    400: "BadRequest",
    401: "Unauthorized",
    403: "Forbidden",
    404: "NotFound",
    409: "Conflict",
    412: "PreconditionFailed",
    413: "ContentTooLarge",
    422: "UnprocessableContent",
    428: "PreconditionRequired",
    429: "TooManyRequests",
    503: "Unavailable",
}
RETRY_AFTER_STATUSES = {409, 429, 503}
ERROR_MODEL_TITLES = {"Failed": "", "SchedulerError": "Scheduler"}
_ENVELOPE = re.compile(r"^Succeed\[(list\[)?(\w+)\]?\]$")


def component_name(title: str) -> str:
    """A schema's component name from its title: `Succeed[UserOut]` -> `UserOutEnvelope`,
    `Succeed[list[UserOut]]` -> `UserOutListEnvelope`; others keep their title (made safe)."""
    envelope = _ENVELOPE.match(title)
    if envelope is not None:
        inner = envelope.group(2)
        inner = {"str": "Text", "int": "Number"}.get(inner, inner)
        return f"{inner}{'List' if envelope.group(1) else ''}Envelope"
    return re.sub(r"[^A-Za-z0-9._-]", "", title)


def share_components(spec: dict[str, Any]) -> dict[str, Any]:
    """Move each response's inline schema to `components/schemas` under `component_name`, and
    each error response to `components/responses` (`ERROR_RESPONSE_NAMES`), referenced from the
    operations: one model per shape, whatever the operation, for client generators."""
    components = spec.setdefault("components", {})
    schemas = components.setdefault("schemas", {})
    responses = components.setdefault("responses", {})

    def shared_schema(media: dict[str, Any]) -> str:
        title = media["schema"]["title"]
        name = component_name(title)
        # Generators name a model by its title: the component's name, not `Succeed[UserOut]`.
        schemas.setdefault(name, {**media["schema"], "title": name})
        media["schema"] = {"$ref": f"#/components/schemas/{name}"}
        return str(title)

    for path_item in spec["paths"].values():
        for operation in path_item.values():
            if "requestBody" in operation:
                operation["requestBody"]["required"] = True  # every body route needs one
            body = operation.get("requestBody", {}).get("content", {})
            for media in body.values():
                if "title" in media.get("schema", {}):
                    shared_schema(media)
            for status, response in operation.get("responses", {}).items():
                media = response.get("content", {}).get("application/json")
                if media is None or "title" not in media["schema"]:
                    continue
                title = shared_schema(media)
                code = int(status)
                if title in ERROR_MODEL_TITLES and code in ERROR_RESPONSE_NAMES:
                    shared = ERROR_MODEL_TITLES[title] + ERROR_RESPONSE_NAMES[code]
                    if shared not in responses:
                        responses[shared] = {**response, "description": _description(code)}
                        if code in RETRY_AFTER_STATUSES:
                            responses[shared]["headers"] = {
                                "Retry-After": {
                                    "description": "Seconds to wait before a retry.",
                                    "schema": {"type": "integer"},
                                }
                            }
                    operation["responses"][status] = {"$ref": f"#/components/responses/{shared}"}
    return spec


def _description(status: int) -> str:
    return f"{HTTPStatus(status).phrase}, in the error envelope"


class DocumentingProvider(OpenAPIProvider):
    """quart-schema's provider, with `NoContent` documented as a response without a body and
    shared components (`share_components`)."""

    def schema(self) -> dict[str, Any]:
        return share_components(super().schema())

    def build_response_object(
        self, model: type[Any], headers_model: type[Any] | None
    ) -> tuple[dict[str, Any], dict[str, Any]]:
        if model is NoContent:
            return {"description": "No Content"}, {}
        return super().build_response_object(model, headers_model)


def documents(
    success: type[Any],
    status: int,
    errors: Iterable[int],
    error_model: type[BaseModel],
    *,
    secured: bool,
) -> Callable[[View], View]:
    """Document `success` with `status`, `error_model` for each of `errors`, and (when
    `secured`) that the route needs Basic, Bearer or a session."""

    def decorator(view: View) -> View:
        documented = document_response(success, status)(view)
        for code in sorted(set(errors)):
            documented = document_response(error_model, code)(documented)
        if secured:
            documented = security_scheme(ANY_CREDENTIALS)(documented)
        return documented

    return decorator


def add_header_model(view: View, model: type[BaseModel]) -> View:
    """Document the request headers of `model` on `view`, beside those already documented
    (quart-schema reads one headers model per route: the two are merged)."""
    existing = getattr(view, QUART_SCHEMA_HEADERS_ATTRIBUTE, None)
    if existing is not None and existing is not model:
        model = type(f"{existing.__name__}And{model.__name__}", (existing, model), {})
    setattr(view, QUART_SCHEMA_HEADERS_ATTRIBUTE, model)
    return view


def responds(
    data: Any, *errors: int, status: int = 200, secured: bool = False
) -> Callable[[View], View]:
    """Document an /api/v1 route: `Succeed[data]` with `status`, and the error envelope for
    `ALWAYS` and each of `errors`."""
    return documents(Succeed[data], status, {*ALWAYS, *errors}, Failed, secured=secured)
