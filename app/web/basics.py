"""Request basics: the routes of the tutorial that introduced the original (contract §7).

Query args, path parameters with a default, JSON bodies, forms, file upload and download,
custom responses, cookies with every `set_cookie` option, and the session. Successes answer in
the envelope; bad input is a 4xx in the envelope naming the parameter.

Fixed from the tutorial: uploads are stored under `UPLOAD_FOLDER` with a generated name (the
client's file name never touches the file system), at most `UPLOAD_MAX_BYTES`; session values
set here live under their own key, so they can never forge a login.
"""

from __future__ import annotations

import asyncio
import os
import re
import secrets
from datetime import datetime
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, Field
from quart import Blueprint, Response, current_app, request, send_from_directory, session
from quart_schema import hide, validate_querystring
from werkzeug.exceptions import BadRequest, HTTPException, NotFound, RequestEntityTooLarge
from werkzeug.utils import secure_filename

from app import state
from app.auth.identity import require_identity
from app.envelope import succeed

blueprint = Blueprint("basics", __name__)

SESSION_NAMESPACE = "basics"  # never the login's key: see the module docstring
STORED_NAME = re.compile(r"^[0-9a-f]{32}(\.[a-z0-9]{1,10})?$")
UPLOAD_CHUNK = 64 * 1024


class InsufficientStorage(HTTPException):
    """507 (RFC 4918 §11.5): the upload folder has reached `UPLOAD_FOLDER_MAX_BYTES`."""

    code = 507
    description = "insufficient storage"


def upload_folder() -> Path:
    folder = Path(state.settings().upload_folder)
    folder.mkdir(parents=True, exist_ok=True)
    return folder


@blueprint.get("/methods")
@hide
async def methods() -> Response:
    """GET only: any other method is 405 with `Allow`."""
    return succeed({"method": request.method})


class NameQuery(BaseModel):
    name: str = Field(min_length=1, max_length=256)


@blueprint.get("/params/url")
@validate_querystring(NameQuery)
@hide
async def params_url(query_args: NameQuery) -> Response:
    """`/params/url?name=x` -> `{"name": "x"}`."""
    return succeed({"name": query_args.name})


@blueprint.get("/params/rest/", defaults={"item_id": "1"})
@blueprint.get("/params/rest/<item_id>")
@hide
async def params_rest(item_id: str) -> Response:
    """A path parameter with a default: `/params/rest/` is id "1"."""
    return succeed({"id": item_id})


@blueprint.post("/params/body")
@hide
async def params_body() -> Response:
    """Echo a JSON body (any JSON value)."""
    if not request.is_json:
        raise BadRequest("request body must be JSON (Content-Type: application/json)")
    return succeed({"body": await request.get_json()})


@blueprint.post("/params/json")
@blueprint.get("/params/json")
@hide
async def params_json() -> Response:
    """A JSON response built from the request: the query args and, if any, the JSON body."""
    body = await request.get_json() if request.is_json else None
    return succeed({"args": request.args.to_dict(flat=False), "json": body})


@blueprint.post("/params/form")
@hide
async def params_form() -> Response:
    """Echo form fields (urlencoded or multipart); repeated fields become lists."""
    if request.mimetype not in ("application/x-www-form-urlencoded", "multipart/form-data"):
        raise BadRequest("request body must be a form (application/x-www-form-urlencoded)")
    form = await request.form
    return succeed(
        {key: (values if len(values) > 1 else values[0]) for key, values in form.lists()}
    )


def folder_size(folder: Path) -> int:
    """Bytes held by the files directly in `folder` (uploads are stored flat)."""
    with os.scandir(folder) as entries:
        return sum(entry.stat().st_size for entry in entries if entry.is_file())


@blueprint.post("/params/file")
@hide
async def params_file() -> Response:
    """Store the multipart field `file` under a generated name in `UPLOAD_FOLDER`.

    `data`: `{"stored_as", "size" (bytes), "filename" (the client's name, sanitised, shown only)}`.
    401 for anonymous clients when `API_AUTH=required`; 400 without a file; 413 over
    `UPLOAD_MAX_BYTES`; 507 when the folder would grow past `UPLOAD_FOLDER_MAX_BYTES`.
    """
    settings = state.settings()
    if settings.api_auth == "required":
        require_identity()
    files = await request.files
    upload = files.get("file")
    if upload is None or not upload.filename:
        raise BadRequest("file: a multipart field named 'file' is required")
    shown_name = secure_filename(upload.filename)
    suffix = Path(shown_name).suffix.lower()
    extension = suffix if re.fullmatch(r"\.[a-z0-9]{1,10}", suffix) else ""
    stored_as = secrets.token_hex(16) + extension
    limit = settings.upload_max_bytes
    folder = upload_folder()
    upload.stream.seek(0, os.SEEK_END)
    incoming = upload.stream.tell()
    upload.stream.seek(0)
    used = await asyncio.to_thread(folder_size, folder)
    if used + incoming > settings.upload_folder_max_bytes:
        raise InsufficientStorage(
            f"file: the upload folder is full ({settings.upload_folder_max_bytes} bytes)"
        )
    target = folder / stored_as
    size = 0
    try:
        with target.open("xb") as output:
            while chunk := upload.stream.read(UPLOAD_CHUNK):
                size += len(chunk)
                if size > limit:
                    raise RequestEntityTooLarge(f"file: at most {limit} bytes")
                output.write(chunk)
    except RequestEntityTooLarge:
        target.unlink(missing_ok=True)
        raise
    return succeed({"stored_as": stored_as, "size": size, "filename": shown_name})


class DownloadQuery(BaseModel):
    name: str = Field(pattern=STORED_NAME.pattern, description="a `stored_as` of /params/file")


@blueprint.get("/download")
@validate_querystring(DownloadQuery)
@hide
async def download(query_args: DownloadQuery) -> Response:
    """Send an uploaded file as an attachment (`Content-Disposition: attachment`), always as
    `application/octet-stream` with `nosniff`: a stored file never renders in the browser."""
    folder = upload_folder()
    if not (folder / query_args.name).is_file():
        raise NotFound("name: no such file")
    response = await send_from_directory(
        folder, query_args.name, as_attachment=True, mimetype="application/octet-stream"
    )
    response.headers["X-Content-Type-Options"] = "nosniff"
    return response


class ResponseQuery(BaseModel):
    status: int = Field(default=201, ge=200, le=599)


@blueprint.get("/response")
@validate_querystring(ResponseQuery)
@hide
async def custom_response(query_args: ResponseQuery) -> Response:
    """A response with a chosen status (`?status=`, default 201) and custom headers."""
    response = succeed({"status": query_args.status}, status=query_args.status)
    response.headers["X-Custom-Header"] = "quart-framework"
    response.headers["Cache-Control"] = "no-store"
    return response


class CookieQuery(BaseModel):
    name: str = Field(pattern=r"^[A-Za-z0-9_.-]{1,64}$")
    value: str = Field(default="", max_length=2048)
    max_age: int | None = Field(default=None, ge=0)
    expires: datetime | None = None
    path: str = Field(default="/", pattern=r"^/[^;\s]*$")
    domain: str | None = Field(default=None, pattern=r"^[A-Za-z0-9.-]{1,253}$")
    secure: bool = False
    httponly: bool = False
    samesite: Literal["Strict", "Lax", "None"] | None = None


class CookieNameQuery(BaseModel):
    name: str | None = Field(default=None, pattern=r"^[A-Za-z0-9_.-]{1,64}$")


@blueprint.get("/cookie/set")
@validate_querystring(CookieQuery)
@hide
async def set_cookie(query_args: CookieQuery) -> Response:
    """Set a cookie with every `set_cookie` option taken from the query string."""
    if query_args.name == current_app.config["SESSION_COOKIE_NAME"]:
        raise BadRequest("name: the session cookie cannot be set here")
    if query_args.samesite == "None" and not query_args.secure:
        raise BadRequest("samesite: None requires secure=true (browsers drop it otherwise)")
    response = succeed({"set": query_args.name})
    response.set_cookie(
        query_args.name,
        query_args.value,
        max_age=query_args.max_age,
        expires=query_args.expires,
        path=query_args.path,
        domain=query_args.domain,
        secure=query_args.secure,
        httponly=query_args.httponly,
        samesite=query_args.samesite,
    )
    return response


@blueprint.get("/cookie/get")
@validate_querystring(CookieNameQuery)
@hide
async def get_cookie(query_args: CookieNameQuery) -> Response:
    """One cookie's value (`?name=`; 404 if absent), or every cookie but the session's."""
    session_cookie = current_app.config["SESSION_COOKIE_NAME"]
    if query_args.name is None:
        return succeed({k: v for k, v in request.cookies.items() if k != session_cookie})
    if query_args.name not in request.cookies or query_args.name == session_cookie:
        raise NotFound(f"name: no cookie named {query_args.name!r}")
    return succeed({query_args.name: request.cookies[query_args.name]})


@blueprint.get("/cookie/delete")
@validate_querystring(CookieQuery)
@hide
async def delete_cookie(query_args: CookieQuery) -> Response:
    """Delete a cookie (same `path` and `domain` as when it was set)."""
    response = succeed({"deleted": query_args.name})
    response.delete_cookie(query_args.name, path=query_args.path, domain=query_args.domain)
    return response


class SessionKeyQuery(BaseModel):
    key: str = Field(pattern=r"^[A-Za-z0-9_.-]{1,64}$")
    value: str | None = Field(default=None, max_length=1024)


class PermanentQuery(BaseModel):
    permanent: bool = True


def session_values() -> dict[str, str]:
    return dict(session.get(SESSION_NAMESPACE) or {})


@blueprint.get("/session/set")
@validate_querystring(SessionKeyQuery)
@hide
async def session_set(query_args: SessionKeyQuery) -> Response:
    """Store `?key=&value=` in the session (signed cookie)."""
    if query_args.value is None:
        raise BadRequest("value: required")
    values = session_values()
    values[query_args.key] = query_args.value
    session[SESSION_NAMESPACE] = values
    return succeed(values)


@blueprint.get("/session/get")
@validate_querystring(CookieNameQuery)
@hide
async def session_get(query_args: CookieNameQuery) -> Response:
    """Every value set through /session/set, and whether the session is permanent."""
    return succeed({"values": session_values(), "permanent": session.permanent})


@blueprint.get("/session/pop")
@validate_querystring(SessionKeyQuery)
@hide
async def session_pop(query_args: SessionKeyQuery) -> Response:
    """Remove `?key=` and return its value (404 if absent)."""
    values = session_values()
    if query_args.key not in values:
        raise NotFound(f"key: no session value {query_args.key!r}")
    popped = values.pop(query_args.key)
    session[SESSION_NAMESPACE] = values
    return succeed({query_args.key: popped})


@blueprint.get("/session/clear")
@hide
async def session_clear() -> Response:
    """Forget every value set here (a login, if any, stays: log out with POST /logout)."""
    session.pop(SESSION_NAMESPACE, None)
    return succeed({})


@blueprint.get("/session/permanent")
@validate_querystring(PermanentQuery)
@hide
async def session_permanent(query_args: PermanentQuery) -> Response:
    """Make the session cookie outlive the browser (`PERMANENT_SESSION_LIFETIME`) or not."""
    session.permanent = query_args.permanent
    lifetime = current_app.permanent_session_lifetime.total_seconds()
    return succeed({"permanent": session.permanent, "lifetime_seconds": int(lifetime)})
