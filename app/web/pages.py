"""Browser pages: log in, log out, and who is online."""

from __future__ import annotations

from urllib.parse import urlsplit

from pydantic import ValidationError
from quart import Blueprint, Response, current_app, redirect, render_template, request
from quart_schema import hide

from app.api.online import presence_store, shown
from app.api.presenters import user_json
from app.api.schemas import LoginIn
from app.auth.identity import current_identity, login_session, logout_session
from app.envelope import describe_validation_error, failed, succeed
from app.services import accounts
from app.services import online as online_service

blueprint = Blueprint("pages", __name__)

WRONG_CREDENTIALS = "wrong user name or password"


def safe_next(target: str | None, default: str = "/online") -> str:
    """A same-site path to go to after login; anything else (other hosts, `//x`) is refused."""
    if not target:
        return default
    parts = urlsplit(target)
    if parts.scheme or parts.netloc or not target.startswith("/") or target.startswith("//"):
        return default
    return target


@blueprint.get("/login")
@hide
async def login_form() -> str:
    return await render_template(
        "login.html", next=request.args.get("next"), identity=current_identity()
    )


@blueprint.post("/login")
@hide
async def login() -> Response | tuple[str, int]:
    """Log in with `name` and `password`, as JSON (answers in the envelope) or as a form
    (redirects to `?next=` or `/online`). Sets the signed session cookie. 401 on wrong
    credentials, 429 past `AUTH_RATE_LIMIT` attempts per client."""
    await current_app.extensions["auth_rate_limiter"].hit("login", request.remote_addr or "-")
    wants_json = request.is_json
    raw = await request.get_json() if wants_json else (await request.form).to_dict()
    try:
        credentials = LoginIn.model_validate(raw)
    except ValidationError as error:
        if wants_json:
            return failed(400, describe_validation_error(error))
        return await render_template("login.html", error="name and password are required",
                                     identity=None), 400
    async with current_app.extensions["database"].session() as session:
        user = await accounts.user_with_password(session, credentials.name, credentials.password)
    if user is None:
        if wants_json:
            return failed(401, WRONG_CREDENTIALS)
        page = await render_template("login.html", error=WRONG_CREDENTIALS, name=credentials.name,
                                     next=request.args.get("next"), identity=None)
        return page, 401
    login_session(user)
    await current_app.extensions["presence"].mark(user.id)
    if wants_json:
        return succeed(user_json(user))
    return redirect(safe_next(request.args.get("next")), 303)


@blueprint.post("/logout")
@hide
async def logout() -> Response:
    """Clear the session. JSON clients get the envelope; forms go back to `/login`."""
    logout_session()
    if request.accept_mimetypes.best == "application/json" or request.is_json:
        return succeed("logged out.")
    return redirect("/login", 303)


@blueprint.get("/online")
@hide
async def online_page() -> str:
    """The recipe's "Online: a, b, c" page, for the last `ONLINE_LAST_MINUTES` minutes."""
    minutes = current_app.extensions["settings"].online_last_minutes
    async with current_app.extensions["database"].session() as session:
        users = await online_service.online_users(session, presence_store(), minutes)
    rows = [{"name": user.name, "last_seen": shown(user.last_seen)} for user in users]
    return await render_template(
        "online.html", users=rows, minutes=minutes, identity=current_identity()
    )
