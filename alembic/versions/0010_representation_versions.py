"""users, blogs, tags: a version column each (the ETag of their representation)

`ADD COLUMN ... NOT NULL DEFAULT 1` fills the existing rows with 1 in the same statement (an
instant ALTER on MariaDB 10.3+ and MySQL 8: no table copy, no lock held while rows are
rewritten), so the migration is safe on tables with rows.

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-05
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0010"
down_revision: str | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TABLES = ("users", "blogs", "tags")


def upgrade() -> None:
    for table in TABLES:
        op.add_column(table, sa.Column("version", sa.Integer(), nullable=False, server_default="1"))


def downgrade() -> None:
    for table in TABLES:
        with op.batch_alter_table(table) as batch:  # SQLite rebuilds the table to drop a column
            batch.drop_column("version")
