-- Fill snapshot_nav for one account's complete snapshots of :start and after (which
-- must have no row there yet: store deletes them first), continuing the recursion of
-- nav_daily (see that view) from the account's last snapshot_nav row before :start.
-- A recursive CTE over the account's portfolio_daily rows; no rounding (the same double
-- operations in the same order on both databases give the same bits). store runs it in
-- the transaction that writes a snapshot (for the newest session, one row);
-- views.refresh runs it for every account when this text, or a fill it reads, changed.
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
        CASE
            WHEN s.total_value <= 0 THEN NULL
            WHEN p.nav IS NULL THEN s.total_value / 1000
            WHEN s.cash_flow > 0 THEN CASE WHEN p.units + s.cash_flow / p.nav > 0 THEN p.units + s.cash_flow / p.nav END
            WHEN s.cash_flow < 0 THEN CASE WHEN p.units + s.cash_flow / ((s.total_value - s.cash_flow) / p.units) > 0 THEN p.units + s.cash_flow / ((s.total_value - s.cash_flow) / p.units) END
            ELSE p.units
        END AS units,
        CASE
            WHEN s.total_value <= 0 THEN NULL
            WHEN p.nav IS NULL THEN CAST(1000 AS DOUBLE PRECISION)
            WHEN s.cash_flow > 0 THEN
                CASE WHEN p.units + s.cash_flow / p.nav > 0 THEN s.total_value / (p.units + s.cash_flow / p.nav) END
            WHEN s.cash_flow < 0 THEN
                CASE WHEN p.units + s.cash_flow / ((s.total_value - s.cash_flow) / p.units) > 0 THEN (s.total_value - s.cash_flow) / p.units END
            ELSE s.total_value / p.units
        END AS nav
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
        CASE
            WHEN s.total_value <= 0 THEN NULL
            WHEN c.nav IS NULL THEN s.total_value / 1000
            WHEN s.cash_flow > 0 THEN CASE WHEN c.units + s.cash_flow / c.nav > 0 THEN c.units + s.cash_flow / c.nav END
            WHEN s.cash_flow < 0 THEN CASE WHEN c.units + s.cash_flow / ((s.total_value - s.cash_flow) / c.units) > 0 THEN c.units + s.cash_flow / ((s.total_value - s.cash_flow) / c.units) END
            ELSE c.units
        END AS units,
        CASE
            WHEN s.total_value <= 0 THEN NULL
            WHEN c.nav IS NULL THEN CAST(1000 AS DOUBLE PRECISION)
            WHEN s.cash_flow > 0 THEN
                CASE WHEN c.units + s.cash_flow / c.nav > 0 THEN s.total_value / (c.units + s.cash_flow / c.nav) END
            WHEN s.cash_flow < 0 THEN
                CASE WHEN c.units + s.cash_flow / ((s.total_value - s.cash_flow) / c.units) > 0 THEN (s.total_value - s.cash_flow) / c.units END
            ELSE s.total_value / c.units
        END AS nav
    FROM chain c
    JOIN series s ON s.n = c.n + 1
)
SELECT snapshot_id, account, snapshot_date, units, nav FROM chain
