"""Bootstrapping the first admin (the `create-admin` command)."""

from __future__ import annotations

from sqlalchemy import select

from app.db import Database
from app.models import User, name_key
from app.names import skeleton
from app.passwords import hash_password
from app.services.permissions import ADMIN_ROLE
from app.services.tokens import revoke_user_credentials
from app.settings import Settings


class LookAlikeName(ValueError):
    """The name looks like another user's (app.names); `str()` names that user."""


async def ensure_admin_account(settings: Settings, *, name: str, password: str) -> bool:
    """Make `name` an admin with `password`; True if the user was created, False if updated.
    Raises `LookAlikeName` when `name` looks like another user's name."""
    # Hashed before the transaction: Argon2 is the slow part (seconds on a loaded host), and
    # the session is bounded by DB_TIMEOUT.
    password_hash = await hash_password(password)
    database = Database(settings)
    try:
        async with database.session() as session:
            user = await session.scalar(select(User).where(User.name_key == name_key(name)))
            created = user is None
            if user is None:
                similar = await session.scalar(
                    select(User.name).where(User.name_skeleton == skeleton(name))
                )
                if similar is not None:
                    raise LookAlikeName(
                        f"{name!r} looks like the existing user name {similar!r} "
                        "(confusable characters)"
                    )
                user = User(name=name)
                session.add(user)
            user.role = ADMIN_ROLE
            user.password_hash = password_hash
            if not created:  # a reset password ends the old sessions and tokens
                await revoke_user_credentials(session, user.id, commit=False)
            await session.commit()
        return created
    finally:
        await database.dispose()
