"""totp_steps: each account's last TOTP step, reserved before its 2FA code is sent, so no
two processes or hosts send one step's code even when the run lock is lost

Revision ID: 0011
Revises: 0010
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "totp_steps",
        sa.Column("account", sa.Text(), nullable=False),
        sa.Column("step", sa.BigInteger(), nullable=False),
        sa.Column("reserved_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("holder", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("account", name=op.f("pk_totp_steps")),
    )


def downgrade() -> None:
    op.drop_table("totp_steps")
