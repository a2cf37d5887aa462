"""`/api/v1/online`: who was active recently (contract §7, online users)."""

from __future__ import annotations

from quart import Blueprint, Response
from quart_schema import tag, validate_querystring
from werkzeug.exceptions import BadRequest

from app import state
from app.api.openapi import OnlineHistory, OnlineList, UserOnline, responds
from app.api.schemas import HistoryQuery, OnlineQuery
from app.envelope import succeed
from app.presence import PresenceStore
from app.presenters import format_epoch, format_time
from app.services import online as online_service
from app.state import database, settings

blueprint = Blueprint("online", __name__)


def presence_store() -> PresenceStore:
    return state.presence().store


def shown(epoch: float | None) -> str | None:
    return format_epoch(epoch, settings().tz)


@blueprint.get("/online")
@responds(OnlineList)
@validate_querystring(OnlineQuery)
@tag(["online"])
async def list_online(query_args: OnlineQuery) -> Response:
    """`{"count", "minutes", "users": [{"id", "name", "last_seen"}]}`, most recent first.

    `minutes` defaults to `ONLINE_LAST_MINUTES`; redis and memory answer up to that, database up
    to `PRESENCE_DATABASE_MAX_MINUTES`; wider is 400.
    """
    minutes = query_args.minutes or settings().online_last_minutes
    store = presence_store()
    async with database().session() as session:
        try:
            users = await online_service.online_users(session, store, minutes)
        except ValueError as error:
            raise BadRequest(str(error)) from error
    return succeed(
        {
            "count": len(users),
            "minutes": minutes,
            "users": [{"id": u.id, "name": u.name, "last_seen": shown(u.last_seen)} for u in users],
        }
    )


@blueprint.get("/online/history")
@responds(OnlineHistory)
@validate_querystring(HistoryQuery)
@tag(["online"])
async def online_history(query_args: HistoryQuery) -> Response:
    """`{"hours", "points": [{"time", "count"}]}`: the online count taken every minute by the
    scheduler's `online_snapshot` job (empty while the scheduler is off), oldest first."""
    async with database().session() as session:
        snapshots = await online_service.online_history(session, hours=query_args.hours)
    tz = settings().tz
    return succeed(
        {
            "hours": query_args.hours,
            "points": [
                {"time": format_time(s.taken_at, tz), "count": s.online_count} for s in snapshots
            ],
        }
    )


@blueprint.get("/online/<user_id>")
@responds(UserOnline, 404)
@tag(["online"])
async def user_online(user_id: str) -> Response:
    """`{"id", "online", "last_seen"}`: online means active in the last `ONLINE_LAST_MINUTES`.
    404 for an unknown user."""
    store = presence_store()
    async with database().session() as session:
        user, last_seen = await online_service.user_last_seen(session, store, user_id)
    window = settings().online_last_minutes * 60
    online = last_seen is not None and last_seen >= store.clock() - window
    return succeed({"id": user.id, "online": online, "last_seen": shown(last_seen)})
