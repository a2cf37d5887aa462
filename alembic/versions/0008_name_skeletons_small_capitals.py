"""look-alike user names: skeletons recomputed with Latin small capitals folded (ʀᴏᴏᴛ is root)

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-05
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    from app.names import skeleton  # this revision's mapping; a new mapping needs a migration

    users = sa.table(
        "users",
        sa.column("id", sa.String),
        sa.column("name", sa.String),
        sa.column("name_skeleton", sa.String),
    )
    bind = op.get_bind()
    rows = bind.execute(
        sa.select(users.c.id, users.c.name, users.c.name_skeleton).order_by(users.c.id)
    ).all()
    taken: set[str] = set()
    changed: list[tuple[str, str]] = []
    for user_id, name, old in rows:
        value = skeleton(name)
        if value in taken:
            # As in 0006: look-alikes made before this revision stay (the older one keeps the
            # skeleton); new ones are refused from now on.
            value = f"{value}#{user_id}"
        taken.add(value)
        if value != old:
            changed.append((user_id, value))
    # Two passes, so that no update meets a value another row still holds (the column is
    # unique): every changed row first gets a value of its own, then its new skeleton.
    for user_id, _ in changed:
        bind.execute(
            users.update().where(users.c.id == user_id).values(name_skeleton=f"#0008#{user_id}")
        )
    for user_id, value in changed:
        bind.execute(users.update().where(users.c.id == user_id).values(name_skeleton=value))


def downgrade() -> None:
    # The skeletons stay as they are: each is still unique, and 0007's code compares new names
    # against them (a name with small capitals made meanwhile keeps its folded skeleton).
    pass
