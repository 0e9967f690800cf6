"""views: portfolio_daily, pnl_daily, holding_daily and friends; indexes they use

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-29 12:00:00.000000

The CREATE VIEW texts below are a frozen copy of ``snapshotter/views.py`` as of this
revision: a migration never imports application code that can change later. A later
change to a view is a new migration that drops and recreates it (and the views that read
it: pnl_daily and portfolio_daily_all read portfolio_daily).
"""

from __future__ import annotations

from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

PORTFOLIO_DAILY = """\
CREATE VIEW portfolio_daily AS
SELECT
    account, snapshot_date, snapshot_id, final,
    holdings_invested, holdings_value,
    ROUND((holdings_value - holdings_invested) * 1000000) / 1000000 AS holdings_unrealised_pnl,
    holdings_day_pnl, mf_invested, mf_value, positions_pnl, positions_m2m, cash, cash_flow,
    ROUND((holdings_value + mf_value + cash + positions_m2m) * 1000000) / 1000000
        AS total_value
FROM (
    SELECT
        hp.account, hp.snapshot_date, hp.snapshot_id, hp.final,
        ROUND(COALESCE(hp.invested, 0) * 1000000) / 1000000 AS holdings_invested,
        ROUND(COALESCE(hp.value, 0) * 1000000) / 1000000 AS holdings_value,
        ROUND(COALESCE(hp.day_pnl, 0) * 1000000) / 1000000 AS holdings_day_pnl,
        ROUND(COALESCE(mp.invested, 0) * 1000000) / 1000000 AS mf_invested,
        ROUND(COALESCE(mp.value, 0) * 1000000) / 1000000 AS mf_value,
        ROUND(COALESCE(pp.pnl, 0) * 1000000) / 1000000 AS positions_pnl,
        ROUND(COALESCE(pp.m2m, 0) * 1000000) / 1000000 AS positions_m2m,
        ROUND(COALESCE(fp.cash, 0) * 1000000) / 1000000 AS cash,
        ROUND(COALESCE(fp.cash_flow, 0) * 1000000) / 1000000 AS cash_flow
    FROM (
        SELECT
            s.account, s.snapshot_date, s.id AS snapshot_id,
            MAX(CASE WHEN s.final THEN 1 ELSE 0 END) AS final,
            SUM((COALESCE(h.quantity, 0) + COALESCE(h.t1_quantity, 0)) * h.average_price)
                AS invested,
            SUM((COALESCE(h.quantity, 0) + COALESCE(h.t1_quantity, 0)) * h.last_price)
                AS value,
            SUM((COALESCE(h.quantity, 0) + COALESCE(h.t1_quantity, 0))
                * (h.last_price - h.close_price)) AS day_pnl
        FROM snapshots s
        LEFT JOIN holdings h
            ON h.account = s.account AND h.snapshot_date = s.snapshot_date
            AND h.snapshot_id = s.id
        WHERE s.status = 'ok'
        GROUP BY s.account, s.snapshot_date, s.id
    ) hp
    JOIN (
        SELECT
            s.account, s.snapshot_date, s.id AS snapshot_id,
            SUM(CASE WHEN ABS(ROUND(m.invested) - m.invested) = 0.5 THEN m.invested + 0.5
                     ELSE ROUND(m.invested) END) / 1000000 AS invested,
            SUM(CASE WHEN ABS(ROUND(m.value) - m.value) = 0.5 THEN m.value + 0.5
                     ELSE ROUND(m.value) END) / 1000000 AS value
        FROM snapshots s
        LEFT JOIN (
            SELECT
                account, snapshot_date, snapshot_id,
                quantity * average_price * 1000000 AS invested,
                quantity * last_price * 1000000 AS value
            FROM mf_holdings
        ) m
            ON m.account = s.account AND m.snapshot_date = s.snapshot_date
            AND m.snapshot_id = s.id
        WHERE s.status = 'ok'
        GROUP BY s.account, s.snapshot_date, s.id
    ) mp
        ON mp.account = hp.account AND mp.snapshot_date = hp.snapshot_date
        AND mp.snapshot_id = hp.snapshot_id
    JOIN (
        SELECT
            s.account, s.snapshot_date, s.id AS snapshot_id,
            SUM(p.pnl) AS pnl,
            SUM(CASE WHEN COALESCE(p.product, '') <> 'CNC' THEN p.m2m END) AS m2m
        FROM snapshots s
        LEFT JOIN positions p
            ON p.account = s.account AND p.snapshot_date = s.snapshot_date
            AND p.position_type = 'net' AND p.snapshot_id = s.id
        WHERE s.status = 'ok'
        GROUP BY s.account, s.snapshot_date, s.id
    ) pp
        ON pp.account = hp.account AND pp.snapshot_date = hp.snapshot_date
        AND pp.snapshot_id = hp.snapshot_id
    JOIN (
        SELECT
            s.account, s.snapshot_date, s.id AS snapshot_id,
            SUM(COALESCE(f.cash, 0) - COALESCE(f.payout, 0)) AS cash,
            SUM(COALESCE(f.intraday_payin, 0) - COALESCE(f.payout, 0)) AS cash_flow
        FROM snapshots s
        LEFT JOIN funds f
            ON f.account = s.account AND f.snapshot_date = s.snapshot_date
            AND f.snapshot_id = s.id
        WHERE s.status = 'ok'
        GROUP BY s.account, s.snapshot_date, s.id
    ) fp
        ON fp.account = hp.account AND fp.snapshot_date = hp.snapshot_date
        AND fp.snapshot_id = hp.snapshot_id
) parts
"""

PORTFOLIO_DAILY_ALL = """\
CREATE VIEW portfolio_daily_all AS
SELECT
    snapshot_date,
    COUNT(*) AS accounts,
    ROUND(SUM(holdings_invested) * 1000000) / 1000000 AS holdings_invested,
    ROUND(SUM(holdings_value) * 1000000) / 1000000 AS holdings_value,
    ROUND(SUM(holdings_unrealised_pnl) * 1000000) / 1000000 AS holdings_unrealised_pnl,
    ROUND(SUM(holdings_day_pnl) * 1000000) / 1000000 AS holdings_day_pnl,
    ROUND(SUM(mf_invested) * 1000000) / 1000000 AS mf_invested,
    ROUND(SUM(mf_value) * 1000000) / 1000000 AS mf_value,
    ROUND(SUM(positions_pnl) * 1000000) / 1000000 AS positions_pnl,
    ROUND(SUM(positions_m2m) * 1000000) / 1000000 AS positions_m2m,
    ROUND(SUM(cash) * 1000000) / 1000000 AS cash,
    ROUND(SUM(cash_flow) * 1000000) / 1000000 AS cash_flow,
    ROUND(SUM(total_value) * 1000000) / 1000000 AS total_value
FROM portfolio_daily
GROUP BY snapshot_date
"""

PNL_DAILY = """\
CREATE VIEW pnl_daily AS
SELECT
    account, snapshot_date, snapshot_id, previous_snapshot_date, previous_total_value,
    total_value, value_change, cash_flow, market_pnl, daily_return, twr_index,
    CASE WHEN twr_peak > 0
        THEN ROUND((twr_index / twr_peak - 1) * 10000000000) / 10000000000
    END AS drawdown
FROM (
    SELECT
        account, snapshot_date, snapshot_id, previous_snapshot_date, previous_total_value,
        total_value, value_change, cash_flow, market_pnl, daily_return, twr_index,
        MAX(twr_index) OVER (
            PARTITION BY account ORDER BY snapshot_date
            ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW) AS twr_peak
    FROM (
        SELECT
            account, snapshot_date, snapshot_id, previous_snapshot_date,
            previous_total_value, total_value, value_change, cash_flow, market_pnl,
            daily_return,
            ROUND(EXP(SUM(CASE WHEN daily_return IS NULL THEN 0
                               ELSE LN(1 + daily_return) END) OVER (
                PARTITION BY account ORDER BY snapshot_date
                ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW))
                * 10000000000) / 10000000000 AS twr_index
        FROM (
            SELECT
                account, snapshot_date, snapshot_id, previous_snapshot_date,
                previous_total_value, total_value, value_change, cash_flow, market_pnl,
                CASE WHEN previous_total_value > 0
                          AND market_pnl > -previous_total_value
                    THEN market_pnl / previous_total_value
                END AS daily_return
            FROM (
                SELECT
                    account, snapshot_date, snapshot_id, previous_snapshot_date,
                    previous_total_value, total_value, value_change, cash_flow,
                    ROUND((value_change - cash_flow) * 1000000) / 1000000 AS market_pnl
                FROM (
                    SELECT
                        account, snapshot_date, snapshot_id, previous_snapshot_date,
                        previous_total_value, total_value, cash_flow,
                        ROUND((total_value - previous_total_value) * 1000000) / 1000000
                            AS value_change
                    FROM (
                        SELECT
                            account, snapshot_date, snapshot_id, total_value, cash_flow,
                            LAG(snapshot_date) OVER (
                                PARTITION BY account ORDER BY snapshot_date)
                                AS previous_snapshot_date,
                            LAG(total_value) OVER (
                                PARTITION BY account ORDER BY snapshot_date)
                                AS previous_total_value
                        FROM portfolio_daily
                    ) with_lag
                ) with_change
            ) with_pnl
        ) with_return
    ) with_twr
) with_peak
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
        SELECT ROUND(SUM((COALESCE(x.quantity, 0) + COALESCE(x.t1_quantity, 0))
                         * x.last_price) * 1000000) / 1000000
        FROM holdings x
        WHERE x.account = h.account AND x.snapshot_date = h.snapshot_date
            AND x.snapshot_id = h.snapshot_id), 0) AS weight,
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
        COALESCE(n.close_price, o.last_price) AS close_price,
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

CORPORATE_ACTIONS = """\
CREATE VIEW corporate_actions AS
SELECT
    account, snapshot_date, snapshot_id, previous_snapshot_date, exchange, tradingsymbol,
    ratio, old_quantity, new_quantity, old_average_price, new_average_price
FROM (
    SELECT
        account, snapshot_date, snapshot_id, previous_snapshot_date, exchange,
        tradingsymbol, old_quantity, new_quantity, old_average_price, new_average_price,
        CASE WHEN old_quantity > 0
            THEN CAST(new_quantity AS DOUBLE PRECISION) / old_quantity
        END AS ratio
    FROM (
        SELECT
            c.account, c.snapshot_date, c.snapshot_id, c.previous_snapshot_date,
            o.exchange, o.tradingsymbol,
            COALESCE(o.quantity, 0) + COALESCE(o.t1_quantity, 0) AS old_quantity,
            COALESCE(n.quantity, 0) + COALESCE(n.t1_quantity, 0) AS new_quantity,
            o.average_price AS old_average_price,
            n.average_price AS new_average_price
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
        CROSS JOIN holdings n  -- CROSS JOIN: SQLite keeps n inside o (found by key)
        WHERE n.account = c.account AND n.snapshot_date = c.snapshot_date
            AND n.exchange = o.exchange AND n.tradingsymbol = o.tradingsymbol
    ) pairs
) ratios
WHERE ABS(ratio - 1) > 0.01
    AND CASE WHEN old_average_price > 0
            THEN ABS(ratio * new_average_price / old_average_price - 1) <= 0.01
        END
"""

RECONCILIATION = """\
CREATE VIEW reconciliation AS
SELECT
    account, snapshot_date, snapshot_id, exchange, tradingsymbol, field, ours, kite,
    ours - kite AS difference
FROM (
    SELECT
        h.account, h.snapshot_date, h.snapshot_id, h.exchange, h.tradingsymbol, f.field,
        CASE WHEN f.field = 'pnl'
            THEN (h.last_price - h.average_price) * COALESCE(h.quantity, 0)
            ELSE h.last_price - h.close_price
        END AS ours,
        CASE WHEN f.field = 'pnl' THEN h.pnl ELSE h.day_change END AS kite
    FROM holdings h
    JOIN snapshots s ON s.id = h.snapshot_id AND s.status = 'ok'
    CROSS JOIN (SELECT 'pnl' AS field UNION ALL SELECT 'day_change' AS field) f
) checks
WHERE ABS(ours - kite) > 1 AND ABS(ours - kite) > 0.005 * ABS(kite)
"""

VIEWS: dict[str, str] = {
    "portfolio_daily": PORTFOLIO_DAILY,
    "portfolio_daily_all": PORTFOLIO_DAILY_ALL,
    "pnl_daily": PNL_DAILY,
    "holding_daily": HOLDING_DAILY,
    "realised_estimate": REALISED_ESTIMATE,
    "corporate_actions": CORPORATE_ACTIONS,
    "reconciliation": RECONCILIATION,
}
"""Creation order; downgrade drops in reverse."""

# Indexes the views' queries use (also declared in snapshotter/models.py): per-snapshot
# holdings sums read from the index alone (portfolio_daily, holding_daily's weight), and
# one instrument's history (holding_daily WHERE account = ? AND tradingsymbol = ?).
INDEXES: list[tuple[str, str, list[str]]] = [
    ("ix_holdings_totals", "holdings",
     ["account", "snapshot_date", "snapshot_id", "quantity", "t1_quantity", "average_price",
      "last_price", "close_price"]),
    ("ix_holdings_symbol", "holdings", ["account", "tradingsymbol", "snapshot_date"]),
]


def upgrade() -> None:
    for name, table, columns in INDEXES:
        op.create_index(name, table, columns)
    for sql in VIEWS.values():
        op.execute(sql)


def downgrade() -> None:
    for name in reversed(VIEWS):
        op.execute(f"DROP VIEW IF EXISTS {name}")
    for name, table, _columns in reversed(INDEXES):
        op.drop_index(name, table_name=table)
