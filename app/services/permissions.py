"""Who may do what on /api/v1 (README "Auth modes").

A service receives the `Actor` making the change, or None when `API_AUTH=open` (the original's
anonymous API, where no rule applies). Rules:
- users: only an admin creates users, changes a role or deletes another user; a user edits and
  deletes their own account;
- blogs: a user writes blogs under their own id, and edits and deletes their own blogs;
- tags: any user creates tags; only an admin renames or deletes them (tags are shared);
- an admin (role 1) may do everything.
"""

from __future__ import annotations

from dataclasses import dataclass

from app.errors import ForbiddenError

ADMIN_ROLE = 1


@dataclass(frozen=True, slots=True)
class Actor:
    """The authenticated user behind a request."""

    user_id: str
    name: str
    role: int

    @property
    def is_admin(self) -> bool:
        return self.role == ADMIN_ROLE


def ensure_admin(actor: Actor | None, action: str) -> None:
    """Raises `ForbiddenError` unless `actor` is an admin (or rules are off: actor None)."""
    if actor is not None and not actor.is_admin:
        raise ForbiddenError(f"only an admin may {action}")


def ensure_self_or_admin(actor: Actor | None, owner_id: str, action: str) -> None:
    """Raises `ForbiddenError` unless `actor` is `owner_id` or an admin (or actor is None)."""
    if actor is not None and not actor.is_admin and actor.user_id != owner_id:
        raise ForbiddenError(f"only the owner or an admin may {action}")
