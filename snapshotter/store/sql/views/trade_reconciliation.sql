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
