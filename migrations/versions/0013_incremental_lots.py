"""Incremental FIFO lots: lot_instruments (what each instrument's lots were built with),
an instrument column on realised_lots and open_lots, indexes on trades by ISIN and
symbol

Revision ID: 0013
Revises: 0010

Lots were rebuilt whole, for the account, by every import of trades or actions and
every run (a million fills: minutes, each time). From here only the instruments whose
trades changed (``lot_instruments.stale``) or whose corporate actions changed (the text
``lot_instruments.actions`` against the actions found now) are rebuilt.

Upgrade fills ``instrument`` of the stored lots (the ISIN, else the symbol, as the lots
were matched) and marks every instrument with equity trades stale: the next import or
run rebuilds them once. Downgrade drops what upgrade added.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0013"
down_revision = "0011"
branch_labels = None
depends_on = None

LOT_TABLES = ("realised_lots", "open_lots")


def upgrade() -> None:
    for table in LOT_TABLES:
        with op.batch_alter_table(table) as batch:
            batch.add_column(sa.Column("instrument", sa.Text(), nullable=False,
                                       server_default=""))
        op.execute(f"UPDATE {table} SET instrument = "
                   "COALESCE(NULLIF(isin, ''), tradingsymbol)")
        with op.batch_alter_table(table) as batch:
            batch.alter_column("instrument", server_default=None)
            batch.create_index(f"ix_{table}_account_instrument", ["account", "instrument"])
    op.create_index("ix_trades_account_isin", "trades", ["account", "isin"])
    op.create_index("ix_trades_account_tradingsymbol", "trades",
                    ["account", "tradingsymbol"])
    op.create_table(
        "lot_instruments",
        sa.Column("account", sa.Text(), nullable=False),
        sa.Column("instrument", sa.Text(), nullable=False),
        sa.Column("actions", sa.Text(), nullable=False),
        sa.Column("realised_lots", sa.Integer(), nullable=False),
        sa.Column("unmatched_lots", sa.Integer(), nullable=False),
        sa.Column("open_lots", sa.Integer(), nullable=False),
        sa.Column("stale", sa.Boolean(), nullable=False),
        sa.PrimaryKeyConstraint("account", "instrument", name="pk_lot_instruments"),
    )
    op.execute("""
        INSERT INTO lot_instruments (account, instrument, actions, realised_lots,
                                     unmatched_lots, open_lots, stale)
        SELECT DISTINCT account, COALESCE(NULLIF(isin, ''), tradingsymbol), '', 0, 0, 0,
               TRUE
        FROM trades WHERE segment = 'EQ'""")


def downgrade() -> None:
    op.drop_table("lot_instruments")
    op.drop_index("ix_trades_account_tradingsymbol", table_name="trades")
    op.drop_index("ix_trades_account_isin", table_name="trades")
    for table in LOT_TABLES:
        with op.batch_alter_table(table) as batch:
            batch.drop_index(f"ix_{table}_account_instrument")
            batch.drop_column("instrument")
