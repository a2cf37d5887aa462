"""scheduler_runs: each scheduled run claimed once, by (job id, scheduled time)

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-29
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import mysql

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TIME = sa.DateTime().with_variant(mysql.DATETIME(fsp=6), "mysql", "mariadb")


def upgrade() -> None:
    op.create_table(
        "scheduler_runs",
        sa.Column("job_id", sa.String(length=64), nullable=False),
        sa.Column("run_time", TIME, nullable=False),
        sa.Column("worker", sa.String(length=255), nullable=False),
        sa.Column("claimed_at", TIME, nullable=False),
        sa.PrimaryKeyConstraint("job_id", "run_time", name=op.f("pk_scheduler_runs")),
        mysql_engine="InnoDB",
        mysql_charset="utf8mb4",
        mysql_collate="utf8mb4_bin",
    )
    op.create_index(op.f("ix_scheduler_runs_run_time"), "scheduler_runs", ["run_time"])


def downgrade() -> None:
    op.drop_index(op.f("ix_scheduler_runs_run_time"), table_name="scheduler_runs")
    op.drop_table("scheduler_runs")
