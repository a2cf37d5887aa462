"""Helpers for tests of authenticated requests."""

from __future__ import annotations

import base64

from quart import Quart

from app.models import User
from app.services import users as user_service
from app.state import app_state


def basic(name: str, password: str) -> dict[str, str]:
    """An `Authorization: Basic` header."""
    encoded = base64.b64encode(f"{name}:{password}".encode()).decode()
    return {"Authorization": f"Basic {encoded}"}


# What a browser sends with a form or fetch of this site (the test client's host is localhost);
# cookie-authenticated writes need it (CSRF rule, docs/security.md).
SAME_ORIGIN = {"Origin": "http://localhost"}


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def make_user(app: Quart, name: str, role: int = 0, password: str = "password-1") -> User:
    """Create a user directly through the service (no permission check), with a password."""
    async with app_state(app).database.session() as session:
        user = await user_service.create_user(session, name=name, role=role, password=password)
        await session.commit()  # services flush; the caller commits
        return user
