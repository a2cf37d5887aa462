"""case-insensitive user names (users.name_key) and server-side sessions (api_tokens.kind)

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-22
"""

import unicodedata
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _name_key(name: str) -> str:
    # A copy of app.models.name_key: a migration must not change when the app does.
    return unicodedata.normalize("NFKC", name).casefold()


def upgrade() -> None:
    with op.batch_alter_table("users") as batch_op:
        batch_op.add_column(sa.Column("name_key", sa.String(length=255), nullable=True))
    users = sa.table(
        "users",
        sa.column("id", sa.String),
        sa.column("name", sa.String),
        sa.column("name_key", sa.String),
    )
    bind = op.get_bind()
    for user_id, name in bind.execute(sa.select(users.c.id, users.c.name)).all():
        bind.execute(users.update().where(users.c.id == user_id).values(name_key=_name_key(name)))
    # Fails if two existing names differ only in case: rename one of them, then upgrade again.
    with op.batch_alter_table("users") as batch_op:
        batch_op.alter_column("name_key", existing_type=sa.String(length=255), nullable=False)
        batch_op.create_unique_constraint(batch_op.f("uq_users_name_key"), ["name_key"])
    with op.batch_alter_table("api_tokens") as batch_op:
        batch_op.add_column(
            sa.Column("kind", sa.String(length=16), nullable=False, server_default="bearer")
        )


def downgrade() -> None:
    op.execute(sa.text("DELETE FROM api_tokens WHERE kind <> 'bearer'"))
    with op.batch_alter_table("api_tokens") as batch_op:
        batch_op.drop_column("kind")
    with op.batch_alter_table("users") as batch_op:
        batch_op.drop_constraint(batch_op.f("uq_users_name_key"), type_="unique")
        batch_op.drop_column("name_key")
