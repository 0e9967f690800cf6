"""Console imports: trades, ledger_entries, dividends, corporate_action_entries (each with
the file it came from, console_files); FIFO lots (realised_lots, open_lots) and the
positions the trades imply (trade_positions), rebuilt per account; trade_reconciliation

Revision ID: 0009
Revises: 0008

The view text below is frozen, as in every migration (see 0002).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None

TRADE_RECONCILIATION = """\
CREATE VIEW trade_reconciliation AS
SELECT
    account, snapshot_date, instrument, tradingsymbol, isin, trades_quantity,
    holdings_quantity,
    ROUND((holdings_quantity - trades_quantity) * 1000000) / 1000000 AS difference
FROM (
    SELECT
        account, snapshot_date, instrument,
        MAX(tradingsymbol) AS tradingsymbol, MAX(isin) AS isin,
        ROUND(SUM(trades_quantity) * 1000000) / 1000000 AS trades_quantity,
        ROUND(SUM(holdings_quantity) * 1000000) / 1000000 AS holdings_quantity
    FROM (
        SELECT
            s.account, s.snapshot_date,
            COALESCE(NULLIF(h.isin, ''), h.tradingsymbol) AS instrument,
            h.tradingsymbol, NULLIF(h.isin, '') AS isin,
            CAST(0 AS DOUBLE PRECISION) AS trades_quantity,
            CAST(COALESCE(h.quantity, 0) + COALESCE(h.t1_quantity, 0) AS DOUBLE PRECISION)
                AS holdings_quantity
        FROM snapshots s
        JOIN (SELECT account, MIN(from_date) AS first_date FROM trade_positions
              GROUP BY account) f
            ON f.account = s.account AND s.snapshot_date >= f.first_date
        JOIN holdings h
            ON h.account = s.account AND h.snapshot_date = s.snapshot_date
            AND h.snapshot_id = s.id
        WHERE s.status = 'ok'
        UNION ALL
        SELECT
            s.account, s.snapshot_date, p.instrument, p.tradingsymbol, p.isin,
            p.quantity AS trades_quantity,
            CAST(0 AS DOUBLE PRECISION) AS holdings_quantity
        FROM snapshots s
        JOIN trade_positions p
            ON p.account = s.account AND p.from_date <= s.snapshot_date
            AND (p.to_date IS NULL OR s.snapshot_date < p.to_date)
        WHERE s.status = 'ok'
    ) sides
    GROUP BY account, snapshot_date, instrument
) sums
WHERE ABS(holdings_quantity - trades_quantity) > 0.000001
"""

VIEWS: dict[str, str] = {"trade_reconciliation": TRADE_RECONCILIATION}


def _file_columns() -> list[sa.Column[object]]:
    return [
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("account", sa.Text(), nullable=False),
        sa.Column("file_id", sa.Integer(), nullable=False),
        sa.Column("source_file", sa.Text(), nullable=False),
    ]


def _file_key(table: str) -> list[sa.schema.SchemaItem]:
    return [
        sa.ForeignKeyConstraint(["file_id"], ["console_files.id"], ondelete="CASCADE",
                                name=f"fk_{table}_file_id_console_files"),
        sa.PrimaryKeyConstraint("id", name=f"pk_{table}"),
    ]


def upgrade() -> None:
    op.create_table(
        "console_files",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("account", sa.Text(), nullable=False),
        sa.Column("kind", sa.Text(), nullable=False),
        sa.Column("file_name", sa.Text(), nullable=False),
        sa.Column("sha256", sa.Text(), nullable=False),
        sa.Column("imported_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("rows", sa.Integer(), nullable=False),
        sa.Column("new_rows", sa.Integer(), nullable=False),
        sa.CheckConstraint("kind IN ('tradebook', 'ledger', 'dividends', 'actions')",
                           name="ck_console_files_kind"),
        sa.PrimaryKeyConstraint("id", name="pk_console_files"),
    )
    op.create_table(
        "trades",
        *_file_columns(),
        sa.Column("tradingsymbol", sa.Text(), nullable=False),
        sa.Column("isin", sa.Text(), nullable=True),
        sa.Column("trade_date", sa.Date(), nullable=False),
        sa.Column("exchange", sa.Text(), nullable=False),
        sa.Column("segment", sa.Text(), nullable=False),
        sa.Column("series", sa.Text(), nullable=True),
        sa.Column("trade_type", sa.Text(), nullable=False),
        sa.Column("auction", sa.Boolean(), nullable=True),
        sa.Column("quantity", sa.Double(), nullable=False),
        sa.Column("price", sa.Double(), nullable=False),
        sa.Column("trade_id", sa.Text(), nullable=False),
        sa.Column("order_id", sa.Text(), nullable=True),
        sa.Column("order_execution_time", sa.DateTime(timezone=True), nullable=True),
        sa.Column("expiry_date", sa.Date(), nullable=True),
        sa.CheckConstraint("trade_type IN ('buy', 'sell')", name="ck_trades_trade_type"),
        sa.UniqueConstraint("account", "exchange", "trade_id", name="uq_trades_account"),
        *_file_key("trades"),
    )
    op.create_table(
        "ledger_entries",
        *_file_columns(),
        sa.Column("posting_date", sa.Date(), nullable=False),
        sa.Column("particulars", sa.Text(), nullable=False),
        sa.Column("cost_center", sa.Text(), nullable=True),
        sa.Column("voucher_type", sa.Text(), nullable=False),
        sa.Column("debit", sa.Double(), nullable=False),
        sa.Column("credit", sa.Double(), nullable=False),
        sa.Column("net_balance", sa.Double(), nullable=False),
        sa.Column("amount", sa.Double(), nullable=False),
        sa.Column("kind", sa.Text(), nullable=False),
        sa.Column("occurrence", sa.Integer(), nullable=False),
        sa.CheckConstraint(
            "kind IN ('deposit', 'withdrawal', 'settlement', 'charge', 'other')",
            name="ck_ledger_entries_kind"),
        sa.UniqueConstraint("account", "posting_date", "voucher_type", "particulars",
                            "debit", "credit", "occurrence",
                            name="uq_ledger_entries_account"),
        *_file_key("ledger_entries"),
    )
    op.create_table(
        "dividends",
        *_file_columns(),
        sa.Column("tradingsymbol", sa.Text(), nullable=False),
        sa.Column("isin", sa.Text(), nullable=True),
        sa.Column("ex_date", sa.Date(), nullable=False),
        sa.Column("quantity", sa.Double(), nullable=False),
        sa.Column("dividend_per_share", sa.Double(), nullable=False),
        sa.Column("net_dividend_amount", sa.Double(), nullable=False),
        sa.Column("occurrence", sa.Integer(), nullable=False),
        sa.UniqueConstraint("account", "tradingsymbol", "ex_date", "dividend_per_share",
                            "occurrence", name="uq_dividends_account"),
        *_file_key("dividends"),
    )
    op.create_table(
        "corporate_action_entries",
        *_file_columns(),
        sa.Column("tradingsymbol", sa.Text(), nullable=False),
        sa.Column("isin", sa.Text(), nullable=True),
        sa.Column("ex_date", sa.Date(), nullable=False),
        sa.Column("action", sa.Text(), nullable=False),
        sa.Column("new_shares", sa.Double(), nullable=False),
        sa.Column("for_every", sa.Double(), nullable=False),
        sa.CheckConstraint("action IN ('split', 'bonus')",
                           name="ck_corporate_action_entries_action"),
        sa.UniqueConstraint("account", "tradingsymbol", "ex_date", "action",
                            name="uq_corporate_action_entries_account"),
        *_file_key("corporate_action_entries"),
    )
    for table in ("trades", "ledger_entries", "dividends", "corporate_action_entries"):
        op.create_index(f"ix_{table}_file_id", table, ["file_id"])
    op.create_index("ix_ledger_entries_account_kind", "ledger_entries",
                    ["account", "kind", "posting_date"])

    op.create_table(
        "realised_lots",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("account", sa.Text(), nullable=False),
        sa.Column("tradingsymbol", sa.Text(), nullable=False),
        sa.Column("isin", sa.Text(), nullable=True),
        sa.Column("buy_date", sa.Date(), nullable=True),
        sa.Column("sell_date", sa.Date(), nullable=False),
        sa.Column("quantity", sa.Double(), nullable=False),
        sa.Column("buy_price", sa.Double(), nullable=True),
        sa.Column("sell_price", sa.Double(), nullable=False),
        sa.Column("pnl", sa.Double(), nullable=True),
        sa.Column("holding_days", sa.Integer(), nullable=True),
        sa.Column("term", sa.Text(), nullable=True),
        sa.Column("unmatched", sa.Boolean(), nullable=False),
        sa.Column("buy_trade_id", sa.Text(), nullable=True),
        sa.Column("sell_trade_id", sa.Text(), nullable=False),
        sa.CheckConstraint("term IN ('intraday', 'short', 'long')",
                           name="ck_realised_lots_term"),
        sa.PrimaryKeyConstraint("id", name="pk_realised_lots"),
    )
    op.create_index("ix_realised_lots_account_sell_date", "realised_lots",
                    ["account", "sell_date"])
    op.create_table(
        "open_lots",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("account", sa.Text(), nullable=False),
        sa.Column("tradingsymbol", sa.Text(), nullable=False),
        sa.Column("isin", sa.Text(), nullable=True),
        sa.Column("buy_date", sa.Date(), nullable=False),
        sa.Column("quantity", sa.Double(), nullable=False),
        sa.Column("buy_price", sa.Double(), nullable=False),
        sa.Column("buy_trade_id", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_open_lots"),
    )
    op.create_index("ix_open_lots_account", "open_lots", ["account"])
    op.create_table(
        "trade_positions",
        sa.Column("account", sa.Text(), nullable=False),
        sa.Column("instrument", sa.Text(), nullable=False),
        sa.Column("from_date", sa.Date(), nullable=False),
        sa.Column("to_date", sa.Date(), nullable=True),
        sa.Column("tradingsymbol", sa.Text(), nullable=False),
        sa.Column("isin", sa.Text(), nullable=True),
        sa.Column("quantity", sa.Double(), nullable=False),
        sa.PrimaryKeyConstraint("account", "instrument", "from_date",
                                name="pk_trade_positions"),
    )
    for sql in VIEWS.values():
        op.execute(sql)


def downgrade() -> None:
    for name in reversed(VIEWS):
        op.execute(f"DROP VIEW IF EXISTS {name}")
    for table in ("trade_positions", "open_lots", "realised_lots",
                  "corporate_action_entries", "dividends", "ledger_entries", "trades",
                  "console_files"):
        op.drop_table(table)
