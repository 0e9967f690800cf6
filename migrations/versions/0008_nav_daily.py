"""nav_daily, nav_daily_all: NAV units (base 1000), as Console's Performance Curve counts them

Revision ID: 0008
Revises: 0007

Creates ``snapshot_nav`` (one row per complete snapshot: the account's ``units`` and
``nav`` after that session), fills it for every account with ``SNAPSHOT_NAV``, and the
views ``nav_daily`` (portfolio_daily's value and flow with the units and NAV) and
``nav_daily_all`` (the same recursion over portfolio_daily_all, at query time).

Why a table for the accounts and a recursive view for the sum: each NAV depends on the
previous one, so the series is a recursion. Over one series (``nav_daily_all``: one row a
session, 2,500 in ten years) a recursive CTE is cheap on both databases. Over every
account's series at once it is not: neither planner pushes ``account = ?`` into a
recursive CTE, so a query for one account would run every account's recursion, and
PostgreSQL rebuilds the hash of the next rows on each step once it outgrows work_mem
(50 accounts x 2,500 sessions: over a minute). ``store`` instead runs the recursion for
one account from the session it writes onwards (usually that one row), in the
transaction that writes the snapshot; ``nav_daily`` reads the rows by index.

Exact and identical on both databases: the recursion's arithmetic is the same IEEE
double operations in the same order on SQLite and PostgreSQL, on inputs that are equal
(portfolio_daily's rounded money), so no rounding is needed; rounding inside the
recursion would compound, and ``ROUND`` breaks ties differently on the two.

Frozen SQL: a migration never imports application code that can change later
(until 0017, ``snapshotter/store/views.py`` read the newest texts from here).
"""

from __future__ import annotations

from datetime import date

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def _step(prev: str) -> str:
    """``units, nav`` of the row ``s`` (total_value, cash_flow) after the row ``prev``
    (units, nav; both NULL when there is none, or its NAV is NULL): a deposit buys units
    at the previous NAV, a withdrawal sells them at today's NAV before the withdrawal,
    no flow keeps them; NULL when the value is 0 or less (or the units would be), and
    1000 on the first row with a value > 0 (the series starts, or starts again)."""
    deposit = f"{prev}.units + s.cash_flow / {prev}.nav"
    withdrawal_nav = f"(s.total_value - s.cash_flow) / {prev}.units"
    withdrawal = f"{prev}.units + s.cash_flow / ({withdrawal_nav})"
    return f"""\
        CASE
            WHEN s.total_value <= 0 THEN NULL
            WHEN {prev}.nav IS NULL THEN s.total_value / 1000
            WHEN s.cash_flow > 0 THEN CASE WHEN {deposit} > 0 THEN {deposit} END
            WHEN s.cash_flow < 0 THEN CASE WHEN {withdrawal} > 0 THEN {withdrawal} END
            ELSE {prev}.units
        END AS units,
        CASE
            WHEN s.total_value <= 0 THEN NULL
            WHEN {prev}.nav IS NULL THEN CAST(1000 AS DOUBLE PRECISION)
            WHEN s.cash_flow > 0 THEN
                CASE WHEN {deposit} > 0 THEN s.total_value / ({deposit}) END
            WHEN s.cash_flow < 0 THEN
                CASE WHEN {withdrawal} > 0 THEN {withdrawal_nav} END
            ELSE s.total_value / {prev}.units
        END AS nav"""


SNAPSHOT_NAV = f"""\
INSERT INTO snapshot_nav (snapshot_id, account, snapshot_date, units, nav)
WITH RECURSIVE
series AS (
    SELECT
        snapshot_id, account, snapshot_date, total_value, cash_flow,
        ROW_NUMBER() OVER (ORDER BY snapshot_date) AS n
    FROM portfolio_daily
    WHERE account = :account AND snapshot_date >= :start
),
chain (n, snapshot_id, account, snapshot_date, total_value, cash_flow, units, nav) AS (
    SELECT
        s.n, s.snapshot_id, s.account, s.snapshot_date, s.total_value, s.cash_flow,
{_step("p")}
    FROM series s
    LEFT JOIN (
        SELECT units, nav FROM snapshot_nav
        WHERE account = :account AND snapshot_date < :start
        ORDER BY snapshot_date DESC
        LIMIT 1
    ) p ON 1 = 1
    WHERE s.n = 1
    UNION ALL
    SELECT
        s.n, s.snapshot_id, s.account, s.snapshot_date, s.total_value, s.cash_flow,
{_step("c")}
    FROM chain c
    JOIN series s ON s.n = c.n + 1
)
SELECT snapshot_id, account, snapshot_date, units, nav FROM chain
"""
"""Fills snapshot_nav for the account's complete snapshots of ``start`` and after (which
must have no row there yet), continuing from its last row before ``start``."""

NAV_DAILY = """\
CREATE VIEW nav_daily AS
SELECT
    p.account, p.snapshot_date, p.snapshot_id, p.total_value, p.cash_flow, n.units, n.nav
FROM portfolio_daily p
JOIN snapshot_nav n
    ON n.account = p.account AND n.snapshot_date = p.snapshot_date
    AND n.snapshot_id = p.snapshot_id
"""

NAV_DAILY_ALL = f"""\
CREATE VIEW nav_daily_all AS
WITH RECURSIVE
series AS (
    SELECT
        snapshot_date, accounts, total_value, cash_flow,
        ROW_NUMBER() OVER (ORDER BY snapshot_date) AS n
    FROM portfolio_daily_all
),
chain (n, snapshot_date, accounts, total_value, cash_flow, units, nav) AS (
    SELECT
        s.n, s.snapshot_date, s.accounts, s.total_value, s.cash_flow,
{_step("p")}
    FROM series s
    LEFT JOIN (
        SELECT
            CAST(NULL AS DOUBLE PRECISION) AS units, CAST(NULL AS DOUBLE PRECISION) AS nav
    ) p ON 1 = 1
    WHERE s.n = 1
    UNION ALL
    SELECT
        s.n, s.snapshot_date, s.accounts, s.total_value, s.cash_flow,
{_step("c")}
    FROM chain c
    JOIN series s ON s.n = c.n + 1
)
SELECT snapshot_date, accounts, total_value, cash_flow, units, nav FROM chain
"""

VIEWS: dict[str, str] = {"nav_daily": NAV_DAILY, "nav_daily_all": NAV_DAILY_ALL}


def upgrade() -> None:
    op.create_table(
        "snapshot_nav",
        sa.Column("snapshot_id", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("account", sa.Text(), nullable=False),
        sa.Column("snapshot_date", sa.Date(), nullable=False),
        sa.Column("units", sa.Double(), nullable=True),
        sa.Column("nav", sa.Double(), nullable=True),
        sa.ForeignKeyConstraint(
            ["snapshot_id"], ["snapshots.id"],
            name=op.f("fk_snapshot_nav_snapshot_id_snapshots"), ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("snapshot_id", name=op.f("pk_snapshot_nav")),
    )
    op.create_index("ix_snapshot_nav_account_date", "snapshot_nav",
                    ["account", "snapshot_date"])
    bind = op.get_bind()
    accounts = bind.execute(sa.text(
        "SELECT DISTINCT account FROM snapshot_totals ORDER BY account")).scalars().all()
    for account in accounts:
        bind.execute(sa.text(SNAPSHOT_NAV), {"account": account, "start": date.min})
    for sql in VIEWS.values():
        op.execute(sql)


def downgrade() -> None:
    for name in reversed(VIEWS):
        op.execute(f"DROP VIEW IF EXISTS {name}")
    op.drop_index("ix_snapshot_nav_account_date", table_name="snapshot_nav")
    op.drop_table("snapshot_nav")
