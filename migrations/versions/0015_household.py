"""household_daily: the all-accounts (ALL) figures when accounts' histories don't line up;
household_leaves; holding_daily and reconciliation money rounded

Revision ID: 0015
Revises: 0010

Until this revision ``portfolio_daily_all`` summed the accounts that had a complete
snapshot of a session, so a missed login (one account absent on a session) read as the
household losing that account's whole value, an account added later as a market gain,
and the series that read it (``nav_daily_all``, ``report performance``'s ALL row, the
charts) moved with them (a TWR of -57% from one refused login).

The household's members: each account from its first complete snapshot until it
leaves (``household_leaves.left_on``, written by `snapshotter household leave`; an
account without a row there stays). Its sessions: the dates on which some member has a
complete snapshot. ``household_daily`` has one row per member and household session
from the member's first:

- a session with the member's own complete snapshot: its ``portfolio_daily`` figures
  and its own ``cash_flow``; on its first snapshot, when the household already had an
  earlier session, the member *joins*: its whole total_value is the flow (money
  arriving, not market gain);
- a session without one (a failed, skipped or missed login): the figures of its last
  complete snapshot before it, *carried* (``carried`` = 1), with no flow and no day
  P&L: the member moves no household figure that session, and its next snapshot's
  market P&L (against the carried value) is its own ``pnl_daily`` one across the gap;
- the first household session on or after ``left_on``: the member *leaves*
  (``leaving`` = 1): figures 0, and its last value counted (its last complete snapshot
  before ``left_on``) leaves as a withdrawal. Its snapshots from ``left_on`` on count
  no more.

``portfolio_daily_all`` sums household_daily per session, so the household's value and
flows satisfy value change = market P&L + flows with the members' own market P&L;
``accounts`` still counts the members with a complete snapshot of the session, and
new columns count those carried, joined and left. ``nav_daily_all`` runs the NAV
recursion over it as before and shows the same counts. ``pnl_daily`` and ``nav_daily``
(per account) keep their own gaps.

``holding_daily``'s money (invested, value, unrealised_pnl, day_pnl) and
``reconciliation``'s ours and difference are rounded to 6 decimals like every other
derived money column (they showed float noise: -6272.00000000003).

Frozen SQL, as in every migration (see 0002).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import context, op

revision = "0015"
down_revision = "0013"
branch_labels = None
depends_on = None

HOUSEHOLD_DAILY = """\
CREATE VIEW household_daily AS
WITH
counted AS (
    SELECT
        p.account, p.snapshot_date, p.snapshot_id, p.holdings_invested, p.holdings_value,
        p.holdings_unrealised_pnl, p.holdings_day_pnl, p.mf_invested, p.mf_value,
        p.positions_pnl, p.positions_m2m, p.cash, p.cash_flow, p.total_value
    FROM portfolio_daily p
    LEFT JOIN household_leaves l ON l.account = p.account
    WHERE l.left_on IS NULL OR p.snapshot_date < l.left_on
),
sessions AS (
    SELECT DISTINCT snapshot_date FROM counted
),
members AS (
    SELECT
        j.account, j.joined, l.left_on,
        (SELECT MIN(s.snapshot_date) FROM sessions s) AS first_session,
        (SELECT MIN(s.snapshot_date) FROM sessions s WHERE s.snapshot_date >= l.left_on)
            AS leaving_session
    FROM (SELECT account, MIN(snapshot_date) AS joined FROM counted GROUP BY account) j
    LEFT JOIN household_leaves l ON l.account = j.account
),
placed AS (
    SELECT
        m.account, s.snapshot_date, m.joined, m.first_session,
        CASE WHEN s.snapshot_date = m.leaving_session THEN 1 ELSE 0 END AS leaving,
        c.snapshot_id AS own_snapshot_id, CAST(0 AS DOUBLE PRECISION) AS zero,
        MAX(c.snapshot_date) OVER (
            PARTITION BY m.account ORDER BY s.snapshot_date
            ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW) AS source_date
    FROM members m
    JOIN sessions s
        ON s.snapshot_date >= m.joined
        AND (m.leaving_session IS NULL OR s.snapshot_date <= m.leaving_session)
    LEFT JOIN counted c ON c.account = m.account AND c.snapshot_date = s.snapshot_date
)
SELECT
    g.account, g.snapshot_date, g.source_date AS source_snapshot_date,
    CASE WHEN g.own_snapshot_id IS NULL AND g.leaving = 0 THEN 1 ELSE 0 END AS carried,
    CASE WHEN g.snapshot_date = g.joined AND g.joined > g.first_session THEN 1 ELSE 0 END
        AS joined,
    g.leaving,
    CASE WHEN g.leaving = 1 THEN g.zero ELSE v.holdings_invested END AS holdings_invested,
    CASE WHEN g.leaving = 1 THEN g.zero ELSE v.holdings_value END AS holdings_value,
    CASE WHEN g.leaving = 1 THEN g.zero ELSE v.holdings_unrealised_pnl END
        AS holdings_unrealised_pnl,
    CASE WHEN g.own_snapshot_id IS NULL THEN g.zero ELSE v.holdings_day_pnl END
        AS holdings_day_pnl,
    CASE WHEN g.leaving = 1 THEN g.zero ELSE v.mf_invested END AS mf_invested,
    CASE WHEN g.leaving = 1 THEN g.zero ELSE v.mf_value END AS mf_value,
    CASE WHEN g.leaving = 1 THEN g.zero ELSE v.positions_pnl END AS positions_pnl,
    CASE WHEN g.leaving = 1 THEN g.zero ELSE v.positions_m2m END AS positions_m2m,
    CASE WHEN g.leaving = 1 THEN g.zero ELSE v.cash END AS cash,
    CASE
        WHEN g.leaving = 1 THEN -v.total_value
        WHEN g.own_snapshot_id IS NULL THEN g.zero
        WHEN g.snapshot_date = g.joined AND g.joined > g.first_session THEN v.total_value
        ELSE v.cash_flow
    END AS cash_flow,
    CASE WHEN g.leaving = 1 THEN g.zero ELSE v.total_value END AS total_value
FROM placed g
JOIN counted v ON v.account = g.account AND v.snapshot_date = g.source_date
"""

PORTFOLIO_DAILY_ALL = """\
CREATE VIEW portfolio_daily_all AS
SELECT
    snapshot_date,
    SUM(1 - carried - leaving) AS accounts,
    SUM(ROUND(holdings_invested * 1000000)) / 1000000 AS holdings_invested,
    SUM(ROUND(holdings_value * 1000000)) / 1000000 AS holdings_value,
    SUM(ROUND(holdings_unrealised_pnl * 1000000)) / 1000000 AS holdings_unrealised_pnl,
    SUM(ROUND(holdings_day_pnl * 1000000)) / 1000000 AS holdings_day_pnl,
    SUM(ROUND(mf_invested * 1000000)) / 1000000 AS mf_invested,
    SUM(ROUND(mf_value * 1000000)) / 1000000 AS mf_value,
    SUM(ROUND(positions_pnl * 1000000)) / 1000000 AS positions_pnl,
    SUM(ROUND(positions_m2m * 1000000)) / 1000000 AS positions_m2m,
    SUM(ROUND(cash * 1000000)) / 1000000 AS cash,
    SUM(ROUND(cash_flow * 1000000)) / 1000000 AS cash_flow,
    SUM(ROUND(total_value * 1000000)) / 1000000 AS total_value,
    SUM(carried) AS accounts_carried,
    SUM(joined) AS accounts_joined,
    SUM(leaving) AS accounts_left
FROM household_daily
GROUP BY snapshot_date
"""


def _step(prev: str) -> str:
    """0008's NAV step (frozen copy): ``units, nav`` of the row ``s`` after ``prev``."""
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


_COUNTS = "s.accounts_carried, s.accounts_joined, s.accounts_left"

NAV_DAILY_ALL = f"""\
CREATE VIEW nav_daily_all AS
WITH RECURSIVE
series AS (
    SELECT
        snapshot_date, accounts, total_value, cash_flow, accounts_carried,
        accounts_joined, accounts_left,
        ROW_NUMBER() OVER (ORDER BY snapshot_date) AS n
    FROM portfolio_daily_all
),
chain (n, snapshot_date, accounts, total_value, cash_flow, accounts_carried,
       accounts_joined, accounts_left, units, nav) AS (
    SELECT
        s.n, s.snapshot_date, s.accounts, s.total_value, s.cash_flow, {_COUNTS},
{_step("p")}
    FROM series s
    LEFT JOIN (
        SELECT
            CAST(NULL AS DOUBLE PRECISION) AS units, CAST(NULL AS DOUBLE PRECISION) AS nav
    ) p ON 1 = 1
    WHERE s.n = 1
    UNION ALL
    SELECT
        s.n, s.snapshot_date, s.accounts, s.total_value, s.cash_flow, {_COUNTS},
{_step("c")}
    FROM chain c
    JOIN series s ON s.n = c.n + 1
)
SELECT
    snapshot_date, accounts, total_value, cash_flow, units, nav, accounts_carried,
    accounts_joined, accounts_left
FROM chain
"""

_QUANTITY = "(COALESCE(h.quantity, 0) + COALESCE(h.t1_quantity, 0))"
_PRICE = "COALESCE(h.last_price, h.close_price)"

HOLDING_DAILY = f"""\
CREATE VIEW holding_daily AS
SELECT
    h.account, h.snapshot_date, h.snapshot_id, c.previous_snapshot_date,
    h.exchange, h.tradingsymbol, h.isin,
    {_QUANTITY} AS quantity,
    h.t1_quantity,
    h.average_price,
    {_PRICE} AS price,
    h.close_price,
    ROUND({_QUANTITY} * h.average_price * 1000000) / 1000000 AS invested,
    ROUND({_QUANTITY} * {_PRICE} * 1000000) / 1000000 AS value,
    ROUND({_QUANTITY} * ({_PRICE} - h.average_price) * 1000000) / 1000000
        AS unrealised_pnl,
    ROUND({_QUANTITY} * ({_PRICE} - h.close_price) * 1000000) / 1000000 AS day_pnl,
    {_QUANTITY} * {_PRICE} / NULLIF((
        SELECT t.holdings_value
        FROM snapshot_totals t
        WHERE t.snapshot_id = h.snapshot_id), 0) AS weight,
    CASE WHEN c.previous_snapshot_id IS NOT NULL
        THEN COALESCE(p.quantity, 0) + COALESCE(p.t1_quantity, 0)
    END AS previous_quantity,
    CASE WHEN c.previous_snapshot_id IS NOT NULL
        THEN {_QUANTITY} - (COALESCE(p.quantity, 0) + COALESCE(p.t1_quantity, 0))
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

RECONCILIATION = """\
CREATE VIEW reconciliation AS
SELECT
    account, snapshot_date, snapshot_id, exchange, tradingsymbol, field, ours, kite,
    ROUND((ours - kite) * 1000000) / 1000000 AS difference
FROM (
    SELECT
        h.account, h.snapshot_date, h.snapshot_id, h.exchange, h.tradingsymbol, f.field,
        CASE WHEN f.field = 'pnl'
            THEN ROUND((h.last_price - h.average_price) * COALESCE(h.quantity, 0)
                       * 1000000) / 1000000
            ELSE ROUND((h.last_price - h.close_price) * 1000000) / 1000000
        END AS ours,
        CASE WHEN f.field = 'pnl' THEN h.pnl ELSE h.day_change END AS kite
    FROM holdings h
    JOIN snapshots s ON s.id = h.snapshot_id AND s.status = 'ok'
    CROSS JOIN (SELECT 'pnl' AS field UNION ALL SELECT 'day_change' AS field) f
) checks
WHERE ABS(ours - kite) > 1 AND ABS(ours - kite) > 0.005 * ABS(kite)
"""

VIEWS: dict[str, str] = {
    "household_daily": HOUSEHOLD_DAILY,
    "portfolio_daily_all": PORTFOLIO_DAILY_ALL,
    "nav_daily_all": NAV_DAILY_ALL,
    "holding_daily": HOLDING_DAILY,
    "reconciliation": RECONCILIATION,
}
"""The views this revision creates or changes, in creation order (household_daily reads
portfolio_daily; portfolio_daily_all reads household_daily; nav_daily_all reads
portfolio_daily_all)."""

RECREATED = ("portfolio_daily_all", "nav_daily_all", "holding_daily", "reconciliation")
"""The views that exist before this revision and change (creation order)."""


def _texts_at(revision_id: str) -> dict[str, str]:
    """The newest text of each view as of ``revision_id`` (its own and its ancestors')."""
    texts: dict[str, str] = {}
    chain = list(context.script.walk_revisions(base="base", head=revision_id))
    for script in reversed(chain):  # oldest first
        texts.update(getattr(script.module, "VIEWS", {}))
    return texts


def upgrade() -> None:
    op.create_table(
        "household_leaves",
        sa.Column("account", sa.Text(), nullable=False),
        sa.Column("left_on", sa.Date(), nullable=False),
        sa.PrimaryKeyConstraint("account", name=op.f("pk_household_leaves")),
    )
    for name in reversed(RECREATED):
        op.execute(f"DROP VIEW IF EXISTS {name}")
    for sql in VIEWS.values():
        op.execute(sql)


def downgrade() -> None:
    previous = _texts_at(down_revision)
    for name in reversed(RECREATED):
        op.execute(f"DROP VIEW IF EXISTS {name}")
    op.execute("DROP VIEW IF EXISTS household_daily")
    for name in RECREATED:
        op.execute(previous[name])
    op.drop_table("household_leaves")
