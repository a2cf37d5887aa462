"""Browser pages: log in, log out, and who is online."""

from __future__ import annotations

from urllib.parse import urlsplit

from pydantic import ValidationError
from quart import Blueprint, Response, redirect, render_template, request
from quart.typing import ResponseReturnValue
from quart_schema import hide

from app import state
from app.auth.identity import (
    authenticate_password,
    current_identity,
    login_session,
    logout_session,
)
from app.auth.schemas import LoginIn
from app.envelope import describe_validation_error, failed, succeed
from app.presenters import format_epoch, user_json
from app.services import online as online_service

blueprint = Blueprint("pages", __name__)

WRONG_CREDENTIALS = "wrong user name or password"


def safe_next(target: str | None, default: str = "/online") -> str:
    r"""A path of this site to go to after login, else `default`.

    Refused: anything with a scheme or host, `//host`, any backslash (browsers read `/\host`
    as `//host`), and control characters or spaces (browsers drop tabs and newlines, so a tab
    between two slashes would become `//host`).
    """
    if not target or not target.startswith("/") or target.startswith("//"):
        return default
    if "\\" in target or any(
        char.isspace() or ord(char) < 0x20 or ord(char) == 0x7F for char in target
    ):
        return default
    parts = urlsplit(target)
    if parts.scheme or parts.netloc:
        return default
    return target


FAVICON_SVG = (
    '<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 16 16">'
    '<rect width="16" height="16" rx="3" fill="#1565c0"/>'
    '<text x="8" y="12" font-size="11" text-anchor="middle" fill="#fff" '
    'font-family="sans-serif">Q</text></svg>'
)


@blueprint.get("/favicon.ico")
@hide
async def favicon() -> Response:
    """The site's icon (SVG), so browsers' automatic request is not a 404."""
    response = Response(FAVICON_SVG, mimetype="image/svg+xml")
    response.cache_control.public = True
    response.cache_control.max_age = 86400
    return response


@blueprint.get("/login")
@hide
async def login_form() -> str:
    return await render_template(
        "login.html", next=request.args.get("next"), identity=current_identity()
    )


@blueprint.post("/login")
@hide
async def login() -> ResponseReturnValue:
    """Log in with `name` and `password`, as JSON (answers in the envelope) or as a form
    (redirects to `?next=` or `/online`). Sets the signed session cookie. 401 on wrong
    credentials, 429 with `Retry-After` once the address or the account has used its budget of
    failed attempts (`AUTH_ADDRESS_RATE_LIMIT`, `AUTH_RATE_LIMIT`)."""
    wants_json = request.is_json
    raw = await request.get_json() if wants_json else (await request.form).to_dict()
    try:
        credentials = LoginIn.model_validate(raw)
    except ValidationError as error:
        if wants_json:
            return failed(400, describe_validation_error(error))
        return await render_template(
            "login.html", error="name and password are required", identity=None
        ), 400
    user = await authenticate_password(credentials.name, credentials.password)
    if user is None:
        if wants_json:
            return failed(401, WRONG_CREDENTIALS)
        page = await render_template(
            "login.html",
            error=WRONG_CREDENTIALS,
            name=credentials.name,
            next=request.args.get("next"),
            identity=None,
        )
        return page, 401
    await login_session(user)
    await state.presence().mark(user.id)
    if wants_json:
        return succeed(user_json(user))
    return redirect(safe_next(request.args.get("next")), 303)


@blueprint.post("/logout")
@hide
async def logout() -> ResponseReturnValue:
    """End this session for every worker and clear the cookie. JSON clients get the envelope;
    forms go back to `/login`."""
    await logout_session()
    if request.accept_mimetypes.best == "application/json" or request.is_json:
        return succeed("logged out.")
    return redirect("/login", 303)


@blueprint.get("/online")
@hide
async def online_page() -> str:
    """The recipe's "Online: a, b, c" page, for the last `ONLINE_LAST_MINUTES` minutes."""
    minutes = state.settings().online_last_minutes
    async with state.database().session() as session:
        users = await online_service.online_users(session, state.presence().store, minutes)
    settings = state.settings()
    tz = settings.tz
    rows = [{"name": user.name, "last_seen": format_epoch(user.last_seen, tz)} for user in users]
    return await render_template(
        "online.html",
        users=rows,
        minutes=minutes,
        identity=current_identity(),
        time_zone=settings.display_timezone,
        snapshots=settings.scheduler_enabled and settings.scheduler_builtin_jobs,
    )
