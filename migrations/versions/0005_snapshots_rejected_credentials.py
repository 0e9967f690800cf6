"""snapshots.rejected_credentials: every replica knows which credentials Kite rejected

Revision ID: 0005
Revises: 0004
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


# Plain ALTER TABLE (SQLite has ADD/DROP COLUMN): batch mode would copy the table, which
# SQLite refuses while views read it.
def upgrade() -> None:
    op.add_column("snapshots", sa.Column("rejected_credentials", sa.Text(), nullable=True))


def downgrade() -> None:
    op.drop_column("snapshots", "rejected_credentials")
