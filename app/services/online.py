"""Who is online: presence-store answers joined with the users' names."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from app.models import OnlineSnapshot, User
from app.presence import PresenceStore
from app.services.users import get_user


@dataclass(frozen=True, slots=True)
class OnlineUser:
    id: str
    name: str
    last_seen: float  # epoch seconds


async def online_users(
    session: AsyncSession, store: PresenceStore, minutes: int
) -> list[OnlineUser]:
    """Users active in the last `minutes` minutes, most recent first (deleted users left out).

    Raises `ValueError` naming `minutes` when the window is wider than the store can answer.
    """
    activity = await store.online(minutes)
    if not activity:
        return []
    rows = await session.execute(select(User.id, User.name).where(User.id.in_(list(activity))))
    users = [OnlineUser(user_id, name, activity[user_id]) for user_id, name in rows]
    return sorted(users, key=lambda user: (-user.last_seen, user.name))


async def user_last_seen(
    session: AsyncSession, store: PresenceStore, user_id: str
) -> tuple[User, float | None]:
    """The user and their last activity (None when unknown to the store or too long ago).
    Raises `NotFoundError` for an unknown user."""
    user = await get_user(session, user_id)
    return user, await store.last_seen(user_id)


async def online_history(session: AsyncSession, *, hours: int) -> list[OnlineSnapshot]:
    """The per-minute online counts of the last `hours` hours, oldest first."""
    since = datetime.now(UTC) - timedelta(hours=hours)
    rows = await session.scalars(
        select(OnlineSnapshot)
        .where(OnlineSnapshot.taken_at >= since)
        .order_by(OnlineSnapshot.taken_at)
    )
    return list(rows)
