"""ledger_flows: the imported ledger's deposits and withdrawals as the cash flows of the
snapshots it covers (gaps included); portfolio_daily.cash_flow reads them

Revision ID: 0010
Revises: 0009

A snapshot shows only the flows of its own day, and only those made before it was taken
(``intraday_payin``, ``payout``): a deposit made on a day without a snapshot, or in the
evening after the snapshot, shows in the next snapshot as a higher cash balance, that
is as market P&L. Console's ledger (``import ledger``) has every deposit (``Bank
Receipts``) and withdrawal (``Bank Payments``) with its posting date. Where the ledger
covers the days from an account's previous complete snapshot P to its snapshot D,
D's cash flow is

    the ledger's deposits and withdrawals posted on P .. D - 1
    - P's own flow (intraday_payin - payout: what P already counted of P's day)
    + D's own flow (what D saw of its own day)

so a flow counts once, on the first snapshot that shows it in its value: a flow Kite
showed on its day counts there (as before), one posted on a day without a snapshot or
after that day's snapshot counts on the next snapshot. Over consecutive covered
snapshots the flows add up to the ledger's, whatever the days (no double counting).

Coverage: each ledger file covers the days from its first to its last posting date
(``console_files.first_date``/``last_date``; the export does not state the range it was
asked for, and a day in between with no posting had none). An account's coverage is the
union of its files' ranges, ranges sharing a day joined. D is covered when one such
stretch holds every day from P to D. An account's first snapshot keeps its own flow.

``ledger_flows`` holds one row per covered snapshot (its flow as above); ``store``
fills it with ``LEDGER_FLOWS`` for an account from a session onwards, in the
transaction that writes a snapshot (the next snapshot's P changes) and in the one that
imports a ledger file (then the account's NAV rows are recomputed from the first
snapshot whose flow changed). ``portfolio_daily.cash_flow`` is that flow where there is
one (``cash_flow_source`` 'ledger'), else the snapshot's own ('snapshot'); every view
that reads it (pnl_daily, nav_daily, portfolio_daily_all, nav_daily_all) follows.

Upgrade backfills the files' ranges from the entries they brought (for a file imported
before this revision, the entries it added: an overlapping re-export added only its new
ones), fills ledger_flows and recomputes the NAV of every account with a ledger; the
views that read portfolio_daily are dropped and recreated (PostgreSQL cannot drop a view
others depend on), the unchanged ones with their earlier texts. Downgrade restores the
0009 views and recomputes those NAVs from the snapshots' own flows.

Frozen SQL, as in every migration (see 0002).
"""

from __future__ import annotations

from datetime import date

import sqlalchemy as sa
from alembic import context, op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None

LEDGER_FLOWS = """\
INSERT INTO ledger_flows (snapshot_id, account, snapshot_date, previous_snapshot_date,
                          cash_flow)
WITH
files AS (
    SELECT
        id, first_date, last_date,
        CASE WHEN first_date <= MAX(last_date) OVER (
                ORDER BY first_date, last_date, id
                ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING)
            THEN 0 ELSE 1
        END AS starts
    FROM console_files
    WHERE account = :account AND kind = 'ledger' AND first_date IS NOT NULL
),
numbered AS (
    SELECT
        first_date, last_date,
        SUM(starts) OVER (ORDER BY first_date, last_date, id
                          ROWS UNBOUNDED PRECEDING) AS stretch
    FROM files
),
coverage AS (
    SELECT MIN(first_date) AS from_date, MAX(last_date) AS to_date
    FROM numbered
    GROUP BY stretch
),
series AS (
    SELECT
        t.snapshot_id, t.account, t.snapshot_date, t.cash_flow,
        LAG(t.snapshot_date) OVER (ORDER BY t.snapshot_date) AS previous_snapshot_date,
        LAG(t.cash_flow) OVER (ORDER BY t.snapshot_date) AS previous_cash_flow
    FROM snapshot_totals t
    JOIN snapshots s
        ON s.account = t.account AND s.snapshot_date = t.snapshot_date
        AND s.id = t.snapshot_id
    WHERE t.account = :account AND s.status = 'ok'
        AND t.snapshot_date >= COALESCE((  -- from the previous snapshot (only complete
            SELECT MAX(p.snapshot_date)    -- snapshots have totals): one index probe
            FROM snapshot_totals p
            WHERE p.account = :account AND p.snapshot_date < :start), :start)
)
SELECT
    c.snapshot_id, c.account, c.snapshot_date, c.previous_snapshot_date,
    ROUND((c.cash_flow - c.previous_cash_flow + COALESCE((
        SELECT SUM(l.amount)
        FROM ledger_entries l
        WHERE l.account = c.account AND l.kind IN ('deposit', 'withdrawal')
            AND l.posting_date >= c.previous_snapshot_date
            AND l.posting_date < c.snapshot_date), 0)) * 1000000) / 1000000
FROM series c
JOIN coverage v
    ON v.from_date <= c.previous_snapshot_date AND c.snapshot_date <= v.to_date
WHERE c.snapshot_date >= :start
"""
"""Fills ledger_flows for the account's complete snapshots of ``start`` and after (which
must have no row there yet) that its ledger covers."""

PORTFOLIO_DAILY = """\
CREATE VIEW portfolio_daily AS
SELECT
    t.account, t.snapshot_date, t.snapshot_id,
    CASE WHEN s.final THEN 1 ELSE 0 END AS final,
    t.holdings_invested, t.holdings_value,
    ROUND((t.holdings_value - t.holdings_invested) * 1000000) / 1000000
        AS holdings_unrealised_pnl,
    t.holdings_day_pnl, t.mf_invested, t.mf_value, t.positions_pnl, t.positions_m2m,
    t.cash, COALESCE(f.cash_flow, t.cash_flow) AS cash_flow,
    ROUND((t.holdings_value + t.mf_value + t.cash + t.positions_m2m) * 1000000) / 1000000
        AS total_value,
    CASE WHEN f.snapshot_id IS NULL THEN 'snapshot' ELSE 'ledger' END AS cash_flow_source
FROM snapshot_totals t
JOIN snapshots s
    ON s.account = t.account AND s.snapshot_date = t.snapshot_date AND s.id = t.snapshot_id
LEFT JOIN ledger_flows f ON f.snapshot_id = t.snapshot_id
WHERE s.status = 'ok'
"""

NAV_DAILY = """\
CREATE VIEW nav_daily AS
SELECT
    p.account, p.snapshot_date, p.snapshot_id, p.total_value, p.cash_flow, n.units, n.nav,
    p.cash_flow_source
FROM portfolio_daily p
JOIN snapshot_nav n
    ON n.account = p.account AND n.snapshot_date = p.snapshot_date
    AND n.snapshot_id = p.snapshot_id
"""

VIEWS: dict[str, str] = {"portfolio_daily": PORTFOLIO_DAILY, "nav_daily": NAV_DAILY}
"""The views this revision changes."""

RECREATED = ("portfolio_daily", "portfolio_daily_all", "pnl_daily", "nav_daily",
             "nav_daily_all")
"""Every view that reads portfolio_daily (directly or through portfolio_daily_all), in
creation order."""


def _texts_at(revision_id: str) -> dict[str, str]:
    """The newest text of each view as of ``revision_id`` (its own and its ancestors')."""
    texts: dict[str, str] = {}
    chain = list(context.script.walk_revisions(base="base", head=revision_id))
    for script in reversed(chain):  # oldest first
        texts.update(getattr(script.module, "VIEWS", {}))
    return texts


def _recreate_views(texts: dict[str, str]) -> None:
    for name in reversed(RECREATED):
        op.execute(f"DROP VIEW IF EXISTS {name}")
    for name in RECREATED:
        op.execute(texts[name])


def _recompute_nav(bind: sa.Connection, accounts: list[str]) -> None:
    """The accounts' snapshot_nav rows from their first session (0008's frozen fill,
    which reads portfolio_daily as it now is)."""
    fill = context.script.get_revision("0008").module.SNAPSHOT_NAV
    for account in accounts:
        bind.execute(sa.text("DELETE FROM snapshot_nav WHERE account = :account"),
                     {"account": account})
        bind.execute(sa.text(fill), {"account": account, "start": date.min})


def upgrade() -> None:
    # Plain ALTER TABLE (batch mode would copy the table).
    op.add_column("console_files", sa.Column("first_date", sa.Date(), nullable=True))
    op.add_column("console_files", sa.Column("last_date", sa.Date(), nullable=True))
    op.create_table(
        "ledger_flows",
        sa.Column("snapshot_id", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("account", sa.Text(), nullable=False),
        sa.Column("snapshot_date", sa.Date(), nullable=False),
        sa.Column("previous_snapshot_date", sa.Date(), nullable=False),
        sa.Column("cash_flow", sa.Double(), nullable=False),
        sa.ForeignKeyConstraint(
            ["snapshot_id"], ["snapshots.id"],
            name=op.f("fk_ledger_flows_snapshot_id_snapshots"), ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("snapshot_id", name=op.f("pk_ledger_flows")),
    )
    op.create_index("ix_ledger_flows_account_date", "ledger_flows",
                    ["account", "snapshot_date"])
    bind = op.get_bind()
    bind.execute(sa.text("""
        UPDATE console_files SET
            first_date = (SELECT MIN(posting_date) FROM ledger_entries
                          WHERE file_id = console_files.id),
            last_date = (SELECT MAX(posting_date) FROM ledger_entries
                         WHERE file_id = console_files.id)
        WHERE kind = 'ledger'"""))
    _recreate_views({**_texts_at("0009"), **VIEWS})
    accounts = list(bind.execute(sa.text(
        "SELECT DISTINCT account FROM console_files WHERE kind = 'ledger' "
        "AND first_date IS NOT NULL ORDER BY account")).scalars())
    for account in accounts:
        bind.execute(sa.text(LEDGER_FLOWS), {"account": account, "start": date.min})
    _recompute_nav(bind, accounts)


def downgrade() -> None:
    bind = op.get_bind()
    accounts = list(bind.execute(sa.text(
        "SELECT DISTINCT account FROM ledger_flows ORDER BY account")).scalars())
    _recreate_views(_texts_at("0009"))
    op.drop_index("ix_ledger_flows_account_date", table_name="ledger_flows")
    op.drop_table("ledger_flows")
    op.drop_column("console_files", "last_date")
    op.drop_column("console_files", "first_date")
    _recompute_nav(bind, accounts)
