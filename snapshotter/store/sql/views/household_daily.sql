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
        j.account, j.joined, f.first_session, MIN(s.snapshot_date) AS leaving_session
    FROM (SELECT account, MIN(snapshot_date) AS joined FROM counted GROUP BY account) j
    CROSS JOIN (SELECT MIN(snapshot_date) AS first_session FROM sessions) f
    LEFT JOIN household_leaves l ON l.account = j.account
    LEFT JOIN sessions s ON s.snapshot_date >= l.left_on
    GROUP BY j.account, j.joined, f.first_session
),
own AS (
    SELECT
        c.account, c.snapshot_date, c.snapshot_id, c.holdings_invested, c.holdings_value,
        c.holdings_unrealised_pnl, c.holdings_day_pnl, c.mf_invested, c.mf_value,
        c.positions_pnl, c.positions_m2m, c.cash, c.cash_flow, c.total_value,
        NULL AS joined, NULL AS first_session, NULL AS leaving_session
    FROM counted c
    UNION ALL
    SELECT
        m.account, s.snapshot_date, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL,
        NULL, NULL, NULL, m.joined, m.first_session, m.leaving_session
    FROM members m
    JOIN sessions s
        ON s.snapshot_date >= m.joined
        AND (m.leaving_session IS NULL OR s.snapshot_date <= m.leaving_session)
),
merged AS (
    SELECT
        account, snapshot_date, MAX(snapshot_id) AS own_snapshot_id,
        MAX(holdings_invested) AS holdings_invested, MAX(holdings_value) AS holdings_value,
        MAX(holdings_unrealised_pnl) AS holdings_unrealised_pnl,
        MAX(holdings_day_pnl) AS holdings_day_pnl, MAX(mf_invested) AS mf_invested,
        MAX(mf_value) AS mf_value, MAX(positions_pnl) AS positions_pnl,
        MAX(positions_m2m) AS positions_m2m, MAX(cash) AS cash, MAX(cash_flow) AS cash_flow,
        MAX(total_value) AS total_value, MAX(joined) AS joined,
        MAX(first_session) AS first_session, MAX(leaving_session) AS leaving_session
    FROM own
    GROUP BY account, snapshot_date
),
placed AS (
    SELECT
        g.*,
        CASE WHEN g.snapshot_date = g.leaving_session THEN 1 ELSE 0 END AS leaving,
        CASE WHEN g.own_snapshot_id IS NULL THEN NULL ELSE g.snapshot_date END AS own_date,
        COUNT(g.own_snapshot_id) OVER (
            PARTITION BY g.account ORDER BY g.snapshot_date
            ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW) AS source_n
    FROM merged g
),
filled AS (
    SELECT
        account, snapshot_date, joined, first_session, leaving, own_snapshot_id,
        CAST(0 AS DOUBLE PRECISION) AS zero,
        FIRST_VALUE(own_date) OVER w AS source_date,
        FIRST_VALUE(holdings_invested) OVER w AS holdings_invested,
        FIRST_VALUE(holdings_value) OVER w AS holdings_value,
        FIRST_VALUE(holdings_unrealised_pnl) OVER w AS holdings_unrealised_pnl,
        holdings_day_pnl,
        FIRST_VALUE(mf_invested) OVER w AS mf_invested,
        FIRST_VALUE(mf_value) OVER w AS mf_value,
        FIRST_VALUE(positions_pnl) OVER w AS positions_pnl,
        FIRST_VALUE(positions_m2m) OVER w AS positions_m2m,
        FIRST_VALUE(cash) OVER w AS cash,
        cash_flow,
        FIRST_VALUE(total_value) OVER w AS total_value
    FROM placed
    WINDOW w AS (PARTITION BY account, source_n ORDER BY snapshot_date)
)
SELECT
    g.account, g.snapshot_date, g.source_date AS source_snapshot_date,
    CASE WHEN g.own_snapshot_id IS NULL AND g.leaving = 0 THEN 1 ELSE 0 END AS carried,
    CASE WHEN g.snapshot_date = g.joined AND g.joined > g.first_session THEN 1 ELSE 0 END
        AS joined,
    g.leaving,
    CASE WHEN g.leaving = 1 THEN g.zero ELSE g.holdings_invested END AS holdings_invested,
    CASE WHEN g.leaving = 1 THEN g.zero ELSE g.holdings_value END AS holdings_value,
    CASE WHEN g.leaving = 1 THEN g.zero ELSE g.holdings_unrealised_pnl END
        AS holdings_unrealised_pnl,
    CASE WHEN g.own_snapshot_id IS NULL THEN g.zero ELSE g.holdings_day_pnl END
        AS holdings_day_pnl,
    CASE WHEN g.leaving = 1 THEN g.zero ELSE g.mf_invested END AS mf_invested,
    CASE WHEN g.leaving = 1 THEN g.zero ELSE g.mf_value END AS mf_value,
    CASE WHEN g.leaving = 1 THEN g.zero ELSE g.positions_pnl END AS positions_pnl,
    CASE WHEN g.leaving = 1 THEN g.zero ELSE g.positions_m2m END AS positions_m2m,
    CASE WHEN g.leaving = 1 THEN g.zero ELSE g.cash END AS cash,
    CASE
        WHEN g.leaving = 1 THEN -g.total_value
        WHEN g.own_snapshot_id IS NULL THEN g.zero
        WHEN g.snapshot_date = g.joined AND g.joined > g.first_session THEN g.total_value
        ELSE g.cash_flow
    END AS cash_flow,
    CASE WHEN g.leaving = 1 THEN g.zero ELSE g.total_value END AS total_value
FROM filled g
