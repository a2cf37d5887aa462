"""look-alike user names: users.name_skeleton (UTS #39 confusable skeleton), unique

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-29
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    from app.names import skeleton  # this revision's mapping; a new mapping needs a migration

    with op.batch_alter_table("users") as batch_op:
        batch_op.add_column(sa.Column("name_skeleton", sa.String(length=255), nullable=True))
    users = sa.table(
        "users",
        sa.column("id", sa.String),
        sa.column("name", sa.String),
        sa.column("name_skeleton", sa.String),
    )
    bind = op.get_bind()
    taken: set[str] = set()
    rows = bind.execute(sa.select(users.c.id, users.c.name).order_by(users.c.id)).all()
    for user_id, name in rows:
        value = skeleton(name)
        if value in taken:
            # Look-alike names made before this revision stay (the older one keeps the
            # skeleton); new ones are refused from now on.
            value = f"{value}#{user_id}"
        taken.add(value)
        bind.execute(users.update().where(users.c.id == user_id).values(name_skeleton=value))
    with op.batch_alter_table("users") as batch_op:
        batch_op.alter_column("name_skeleton", existing_type=sa.String(length=255), nullable=False)
        batch_op.create_unique_constraint(batch_op.f("uq_users_name_skeleton"), ["name_skeleton"])


def downgrade() -> None:
    with op.batch_alter_table("users") as batch_op:
        batch_op.drop_constraint(batch_op.f("uq_users_name_skeleton"), type_="unique")
        batch_op.drop_column("name_skeleton")
