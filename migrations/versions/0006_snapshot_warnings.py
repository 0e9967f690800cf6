"""snapshots.warnings; a holding without last_price valued at its close_price

Revision ID: 0006
Revises: 0005

Adds the ledger column ``warnings`` (answers that parse but look wrong, one sentence per
line; NULL when none). Kite sometimes answers a holding without a ``last_price``: it is
stored NULL, and from this revision valued at ``close_price`` (an MF holding, which has no
close, at ``average_price``) wherever the sums and views used ``last_price``:
``SNAPSHOT_TOTALS`` (holdings value and day P&L, MF value), ``holding_daily`` (price,
value, P&L, weight) and ``realised_estimate`` (the fallback sell price). Upgrade re-sums
the snapshot_totals rows of snapshots holding such rows; downgrade restores the 0003
sums, the 0003 holding_daily and the 0002 realised_estimate. ``reconciliation`` keeps
comparing Kite's figures with the ``last_price`` Kite sent (none: no row).

Frozen SQL: a migration never imports application code that can change later.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import context, op

revision = "0006"
down_revision = "0005"
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
                               * COALESCE(h.last_price, h.close_price)), 0) * 1000000)
            / 1000000
     FROM holdings h
     WHERE h.account = s.account AND h.snapshot_date = s.snapshot_date
         AND h.snapshot_id = s.id),
    (SELECT ROUND(COALESCE(SUM((COALESCE(h.quantity, 0) + COALESCE(h.t1_quantity, 0))
                               * (COALESCE(h.last_price, h.close_price) - h.close_price)), 0)
                  * 1000000) / 1000000
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
         SELECT quantity * COALESCE(last_price, average_price) * 1000000 AS value
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

HOLDING_DAILY = """\
CREATE VIEW holding_daily AS
SELECT
    h.account, h.snapshot_date, h.snapshot_id, c.previous_snapshot_date,
    h.exchange, h.tradingsymbol, h.isin,
    COALESCE(h.quantity, 0) + COALESCE(h.t1_quantity, 0) AS quantity,
    h.t1_quantity,
    h.average_price,
    COALESCE(h.last_price, h.close_price) AS price,
    h.close_price,
    (COALESCE(h.quantity, 0) + COALESCE(h.t1_quantity, 0)) * h.average_price AS invested,
    (COALESCE(h.quantity, 0) + COALESCE(h.t1_quantity, 0))
        * COALESCE(h.last_price, h.close_price) AS value,
    (COALESCE(h.quantity, 0) + COALESCE(h.t1_quantity, 0))
        * (COALESCE(h.last_price, h.close_price) - h.average_price) AS unrealised_pnl,
    (COALESCE(h.quantity, 0) + COALESCE(h.t1_quantity, 0))
        * (COALESCE(h.last_price, h.close_price) - h.close_price) AS day_pnl,
    (COALESCE(h.quantity, 0) + COALESCE(h.t1_quantity, 0))
        * COALESCE(h.last_price, h.close_price) / NULLIF((
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

REALISED_ESTIMATE = """\
CREATE VIEW realised_estimate AS
SELECT
    account, snapshot_date, snapshot_id, previous_snapshot_date, exchange, tradingsymbol,
    previous_quantity, quantity, quantity_sold,
    COALESCE(day_sell_price, previous_day_sell_price, close_price) AS sell_price,
    CASE WHEN COALESCE(day_sell_price, previous_day_sell_price) IS NOT NULL
        THEN 'day_position' ELSE 'close'
    END AS price_source,
    average_price,
    ROUND(quantity_sold
          * (COALESCE(day_sell_price, previous_day_sell_price, close_price) - average_price)
          * 1000000) / 1000000 AS realised_pnl_estimate,
    1 AS is_estimate
FROM (
    SELECT
        c.account, c.snapshot_date, c.snapshot_id, c.previous_snapshot_date,
        o.exchange, o.tradingsymbol,
        COALESCE(o.quantity, 0) + COALESCE(o.t1_quantity, 0) AS previous_quantity,
        COALESCE(n.quantity, 0) + COALESCE(n.t1_quantity, 0) AS quantity,
        COALESCE(o.quantity, 0) + COALESCE(o.t1_quantity, 0)
            - (COALESCE(n.quantity, 0) + COALESCE(n.t1_quantity, 0)) AS quantity_sold,
        o.average_price,
        COALESCE(n.close_price, o.last_price, o.close_price) AS close_price,
        (SELECT ROUND(
                    SUM(CASE WHEN d.day_sell_quantity > 0 AND d.day_sell_price > 0
                            THEN d.day_sell_price * d.day_sell_quantity
                            ELSE d.sell_price * d.sell_quantity END)
                    / CAST(SUM(CASE WHEN d.day_sell_quantity > 0 AND d.day_sell_price > 0
                                   THEN d.day_sell_quantity
                                   ELSE d.sell_quantity END) AS DOUBLE PRECISION)
                    * 1000000) / 1000000
         FROM positions d
         WHERE d.account = c.account AND d.snapshot_date = c.snapshot_date
             AND d.snapshot_id = c.snapshot_id AND d.position_type = 'day'
             AND d.exchange = o.exchange AND d.tradingsymbol = o.tradingsymbol
             AND ((d.day_sell_quantity > 0 AND d.day_sell_price > 0)
                  OR (d.sell_quantity > 0 AND d.sell_price > 0))
        ) AS day_sell_price,
        (SELECT ROUND(
                    SUM(CASE WHEN d.day_sell_quantity > 0 AND d.day_sell_price > 0
                            THEN d.day_sell_price * d.day_sell_quantity
                            ELSE d.sell_price * d.sell_quantity END)
                    / CAST(SUM(CASE WHEN d.day_sell_quantity > 0 AND d.day_sell_price > 0
                                   THEN d.day_sell_quantity
                                   ELSE d.sell_quantity END) AS DOUBLE PRECISION)
                    * 1000000) / 1000000
         FROM positions d
         WHERE d.account = c.account AND d.snapshot_date = c.previous_snapshot_date
             AND d.snapshot_id = c.previous_snapshot_id AND d.position_type = 'day'
             AND d.exchange = o.exchange AND d.tradingsymbol = o.tradingsymbol
             AND ((d.day_sell_quantity > 0 AND d.day_sell_price > 0)
                  OR (d.sell_quantity > 0 AND d.sell_price > 0))
        ) AS previous_day_sell_price
    FROM (
        SELECT
            id AS snapshot_id, account, snapshot_date,
            LAG(id) OVER (PARTITION BY account ORDER BY snapshot_date)
                AS previous_snapshot_id,
            LAG(snapshot_date) OVER (PARTITION BY account ORDER BY snapshot_date)
                AS previous_snapshot_date
        FROM snapshots
        WHERE status = 'ok'
    ) c
    JOIN holdings o
        ON o.account = c.account AND o.snapshot_date = c.previous_snapshot_date
        AND o.snapshot_id = c.previous_snapshot_id
    LEFT JOIN holdings n
        ON n.account = c.account AND n.snapshot_date = c.snapshot_date
        AND n.exchange = o.exchange AND n.tradingsymbol = o.tradingsymbol
    WHERE COALESCE(o.quantity, 0) + COALESCE(o.t1_quantity, 0)
        > COALESCE(n.quantity, 0) + COALESCE(n.t1_quantity, 0)
) sales
"""

VIEWS: dict[str, str] = {
    "holding_daily": HOLDING_DAILY,
    "realised_estimate": REALISED_ESTIMATE,
}
"""The views this revision changes (no view reads either of them)."""

# Where each changed view's previous text lives.
PREVIOUS_VIEWS = {"holding_daily": "0003", "realised_estimate": "0002"}

UNPRICED_SNAPSHOTS = """\
SELECT t.snapshot_id FROM snapshot_totals t
WHERE t.snapshot_id IN (SELECT snapshot_id FROM holdings WHERE last_price IS NULL)
    OR t.snapshot_id IN (SELECT snapshot_id FROM mf_holdings WHERE last_price IS NULL)
ORDER BY t.snapshot_id
"""


def _resum_unpriced(totals_sql: str) -> None:
    """Re-sum the totals of the snapshots that hold a row without last_price."""
    bind = op.get_bind()
    for (snapshot_id,) in bind.execute(sa.text(UNPRICED_SNAPSHOTS)).all():
        bind.execute(sa.text("DELETE FROM snapshot_totals WHERE snapshot_id = :id"),
                     {"id": snapshot_id})
        bind.execute(sa.text(totals_sql), {"first_id": snapshot_id, "last_id": snapshot_id})


def _replace_views(texts: dict[str, str]) -> None:
    for name, sql in texts.items():
        op.execute(f"DROP VIEW IF EXISTS {name}")
        op.execute(sql)


def upgrade() -> None:
    # Plain ADD COLUMN (as 0005): batch mode would copy the table, which SQLite refuses
    # while views read it.
    op.add_column("snapshots", sa.Column("warnings", sa.Text(), nullable=True))
    _resum_unpriced(SNAPSHOT_TOTALS)
    _replace_views(VIEWS)


def downgrade() -> None:
    scripts = context.script
    _replace_views({name: scripts.get_revision(rev).module.VIEWS[name]
                    for name, rev in PREVIOUS_VIEWS.items()})
    _resum_unpriced(scripts.get_revision("0003").module.SNAPSHOT_TOTALS)
    op.drop_column("snapshots", "warnings")
