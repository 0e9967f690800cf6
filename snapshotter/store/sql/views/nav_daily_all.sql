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
        s.n, s.snapshot_date, s.accounts, s.total_value, s.cash_flow, s.accounts_carried, s.accounts_joined, s.accounts_left,
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
        SELECT
            CAST(NULL AS DOUBLE PRECISION) AS units, CAST(NULL AS DOUBLE PRECISION) AS nav
    ) p ON 1 = 1
    WHERE s.n = 1
    UNION ALL
    SELECT
        s.n, s.snapshot_date, s.accounts, s.total_value, s.cash_flow, s.accounts_carried, s.accounts_joined, s.accounts_left,
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
SELECT
    snapshot_date, accounts, total_value, cash_flow, units, nav, accounts_carried,
    accounts_joined, accounts_left
FROM chain
