"""benchmark_daily: daily closes of an index (e.g. NIFTY 50) to compare returns with

Revision ID: 0007
Revises: 0006
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "benchmark_daily",
        sa.Column("name", sa.Text(), nullable=False),
        sa.Column("date", sa.Date(), nullable=False),
        sa.Column("close", sa.Double(), nullable=False),
        sa.PrimaryKeyConstraint("name", "date"),
    )


def downgrade() -> None:
    op.drop_table("benchmark_daily")
