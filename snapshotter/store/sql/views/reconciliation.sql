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
