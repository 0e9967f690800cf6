"""snapshot_totals: per-snapshot sums, so that portfolio_daily does not re-sum every holding

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-30 12:00:00.000000

Creates ``snapshot_totals`` (one row per complete snapshot: the sums portfolio_daily
shows), fills it for every existing complete snapshot with ``SNAPSHOT_TOTALS`` (the
aggregation the 0002 views did at query time, same formulas and rounding), and recreates
the views that read those sums: portfolio_daily (from snapshot_totals), holding_daily
(its weight), and the views that read portfolio_daily (portfolio_daily_all, pnl_daily;
their 0002 text, recreated because PostgreSQL cannot drop a view others depend on).
Downgrade restores the 0002 views and drops the table.

The SQL here is frozen as of this revision: a migration never imports application code
that can change later (until 0017, ``snapshotter/views.py`` read the newest text from here). The
downgrade takes 0002's texts from that revision itself.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import context, op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

SNAPSHOT_TOTALS = """\
INSERT INTO snapshot_totals (
    snapshot_id, account, snapshot_date, holdings_invested, holdings_value, holdings_day_pnl,
    mf_invested, mf_value, positions_pnl, positions_m2m, cash, cash_flow)
SELECT
    s.id, s.account, s.snapshot_date,
    (SELECT ROUND(COALESCE(SUM((COALESCE(h.quantity, 0) + COALESCE(h.t1_quantity, 0))
                               * h.average_price), 0) * 1000000) / 1000000
     FROM holdings h
     WHERE h.account = s.account AND h.snapshot_date = s.snapshot_date
         AND h.snapshot_id = s.id),
    (SELECT ROUND(COALESCE(SUM((COALESCE(h.quantity, 0) + COALESCE(h.t1_quantity, 0))
                               * h.last_price), 0) * 1000000) / 1000000
     FROM holdings h
     WHERE h.account = s.account AND h.snapshot_date = s.snapshot_date
         AND h.snapshot_id = s.id),
    (SELECT ROUND(COALESCE(SUM((COALESCE(h.quantity, 0) + COALESCE(h.t1_quantity, 0))
                               * (h.last_price - h.close_price)), 0) * 1000000) / 1000000
     FROM holdings h
     WHERE h.account = s.account AND h.snapshot_date = s.snapshot_date
         AND h.snapshot_id = s.id),
    (SELECT ROUND(COALESCE(SUM(CASE WHEN ABS(ROUND(m.invested) - m.invested) = 0.5
                                   THEN m.invested + 0.5
                                   ELSE ROUND(m.invested) END) / 1000000, 0)
                  * 1000000) / 1000000
     FROM (
         SELECT quantity * average_price * 1000000 AS invested
         FROM mf_holdings
         WHERE account = s.account AND snapshot_date = s.snapshot_date
             AND snapshot_id = s.id
     ) m),
    (SELECT ROUND(COALESCE(SUM(CASE WHEN ABS(ROUND(m.value) - m.value) = 0.5
                                   THEN m.value + 0.5
                                   ELSE ROUND(m.value) END) / 1000000, 0)
                  * 1000000) / 1000000
     FROM (
         SELECT quantity * last_price * 1000000 AS value
         FROM mf_holdings
         WHERE account = s.account AND snapshot_date = s.snapshot_date
             AND snapshot_id = s.id
     ) m),
    (SELECT ROUND(COALESCE(SUM(p.pnl), 0) * 1000000) / 1000000
     FROM positions p
     WHERE p.account = s.account AND p.snapshot_date = s.snapshot_date
         AND p.position_type = 'net' AND p.snapshot_id = s.id),
    (SELECT ROUND(COALESCE(SUM(CASE WHEN COALESCE(p.product, '') <> 'CNC' THEN p.m2m END), 0)
                  * 1000000) / 1000000
     FROM positions p
     WHERE p.account = s.account AND p.snapshot_date = s.snapshot_date
         AND p.position_type = 'net' AND p.snapshot_id = s.id),
    (SELECT ROUND(COALESCE(SUM(COALESCE(f.cash, 0) - COALESCE(f.payout, 0)), 0) * 1000000)
            / 1000000
     FROM funds f
     WHERE f.account = s.account AND f.snapshot_date = s.snapshot_date
         AND f.snapshot_id = s.id),
    (SELECT ROUND(COALESCE(SUM(COALESCE(f.intraday_payin, 0) - COALESCE(f.payout, 0)), 0)
                  * 1000000) / 1000000
     FROM funds f
     WHERE f.account = s.account AND f.snapshot_date = s.snapshot_date
         AND f.snapshot_id = s.id)
FROM snapshots s
WHERE s.status = 'ok' AND s.id BETWEEN :first_id AND :last_id
"""
"""Fills snapshot_totals for the complete snapshots with first_id <= id <= last_id."""

PORTFOLIO_DAILY = """\
CREATE VIEW portfolio_daily AS
SELECT
    t.account, t.snapshot_date, t.snapshot_id,
    CASE WHEN s.final THEN 1 ELSE 0 END AS final,
    t.holdings_invested, t.holdings_value,
    ROUND((t.holdings_value - t.holdings_invested) * 1000000) / 1000000
        AS holdings_unrealised_pnl,
    t.holdings_day_pnl, t.mf_invested, t.mf_value, t.positions_pnl, t.positions_m2m,
    t.cash, t.cash_flow,
    ROUND((t.holdings_value + t.mf_value + t.cash + t.positions_m2m) * 1000000) / 1000000
        AS total_value
FROM snapshot_totals t
JOIN snapshots s
    ON s.account = t.account AND s.snapshot_date = t.snapshot_date AND s.id = t.snapshot_id
WHERE s.status = 'ok'
"""

HOLDING_DAILY = """\
CREATE VIEW holding_daily AS
SELECT
    h.account, h.snapshot_date, h.snapshot_id, c.previous_snapshot_date,
    h.exchange, h.tradingsymbol, h.isin,
    COALESCE(h.quantity, 0) + COALESCE(h.t1_quantity, 0) AS quantity,
    h.t1_quantity,
    h.average_price,
    h.last_price AS price,
    h.close_price,
    (COALESCE(h.quantity, 0) + COALESCE(h.t1_quantity, 0)) * h.average_price AS invested,
    (COALESCE(h.quantity, 0) + COALESCE(h.t1_quantity, 0)) * h.last_price AS value,
    (COALESCE(h.quantity, 0) + COALESCE(h.t1_quantity, 0))
        * (h.last_price - h.average_price) AS unrealised_pnl,
    (COALESCE(h.quantity, 0) + COALESCE(h.t1_quantity, 0))
        * (h.last_price - h.close_price) AS day_pnl,
    (COALESCE(h.quantity, 0) + COALESCE(h.t1_quantity, 0)) * h.last_price / NULLIF((
        SELECT t.holdings_value
        FROM snapshot_totals t
        WHERE t.snapshot_id = h.snapshot_id), 0) AS weight,
    CASE WHEN c.previous_snapshot_id IS NOT NULL
        THEN COALESCE(p.quantity, 0) + COALESCE(p.t1_quantity, 0)
    END AS previous_quantity,
    CASE WHEN c.previous_snapshot_id IS NOT NULL
        THEN COALESCE(h.quantity, 0) + COALESCE(h.t1_quantity, 0)
            - (COALESCE(p.quantity, 0) + COALESCE(p.t1_quantity, 0))
    END AS quantity_change
FROM holdings h
JOIN (
    SELECT
        id AS snapshot_id, account, snapshot_date,
        LAG(id) OVER (PARTITION BY account ORDER BY snapshot_date) AS previous_snapshot_id,
        LAG(snapshot_date) OVER (PARTITION BY account ORDER BY snapshot_date)
            AS previous_snapshot_date
    FROM snapshots
    WHERE status = 'ok'
) c
    ON c.account = h.account AND c.snapshot_date = h.snapshot_date
    AND c.snapshot_id = h.snapshot_id
LEFT JOIN holdings p
    ON p.account = h.account AND p.snapshot_date = c.previous_snapshot_date
    AND p.exchange = h.exchange AND p.tradingsymbol = h.tradingsymbol
"""

VIEWS: dict[str, str] = {
    "portfolio_daily": PORTFOLIO_DAILY,
    "holding_daily": HOLDING_DAILY,
}
"""The views this revision changes. portfolio_daily_all and pnl_daily read portfolio_daily
and PostgreSQL cannot drop a view others depend on: they are dropped and recreated with
their unchanged 0002 text."""

RECREATED = ("portfolio_daily", "portfolio_daily_all", "pnl_daily", "holding_daily")


def _recreate_views(changed: dict[str, str]) -> None:
    unchanged = context.script.get_revision("0002").module.VIEWS
    for name in reversed(RECREATED):
        op.execute(f"DROP VIEW IF EXISTS {name}")
    for name in RECREATED:
        op.execute(changed.get(name, unchanged[name]))


def upgrade() -> None:
    op.create_table(
        "snapshot_totals",
        sa.Column("snapshot_id", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("account", sa.Text(), nullable=False),
        sa.Column("snapshot_date", sa.Date(), nullable=False),
        sa.Column("holdings_invested", sa.Double(), nullable=False),
        sa.Column("holdings_value", sa.Double(), nullable=False),
        sa.Column("holdings_day_pnl", sa.Double(), nullable=False),
        sa.Column("mf_invested", sa.Double(), nullable=False),
        sa.Column("mf_value", sa.Double(), nullable=False),
        sa.Column("positions_pnl", sa.Double(), nullable=False),
        sa.Column("positions_m2m", sa.Double(), nullable=False),
        sa.Column("cash", sa.Double(), nullable=False),
        sa.Column("cash_flow", sa.Double(), nullable=False),
        sa.ForeignKeyConstraint(
            ["snapshot_id"], ["snapshots.id"],
            name=op.f("fk_snapshot_totals_snapshot_id_snapshots"), ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("snapshot_id", name=op.f("pk_snapshot_totals")),
    )
    op.create_index("ix_snapshot_totals_account_date", "snapshot_totals",
                    ["account", "snapshot_date"])
    bind = op.get_bind()
    first, last = bind.execute(sa.text("SELECT MIN(id), MAX(id) FROM snapshots")).one()
    if first is not None:
        bind.execute(sa.text(SNAPSHOT_TOTALS), {"first_id": first, "last_id": last})
    _recreate_views(VIEWS)


def downgrade() -> None:
    _recreate_views({})
    op.drop_index("ix_snapshot_totals_account_date", table_name="snapshot_totals")
    op.drop_table("snapshot_totals")
