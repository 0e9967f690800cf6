CREATE VIEW holding_daily AS
SELECT
    h.account, h.snapshot_date, h.snapshot_id, c.previous_snapshot_date,
    h.exchange, h.tradingsymbol, h.isin,
    (COALESCE(h.quantity, 0) + COALESCE(h.t1_quantity, 0)) AS quantity,
    h.t1_quantity,
    h.average_price,
    COALESCE(h.last_price, h.close_price) AS price,
    h.close_price,
    ROUND((COALESCE(h.quantity, 0) + COALESCE(h.t1_quantity, 0)) * h.average_price * 1000000) / 1000000 AS invested,
    ROUND((COALESCE(h.quantity, 0) + COALESCE(h.t1_quantity, 0)) * COALESCE(h.last_price, h.close_price) * 1000000) / 1000000 AS value,
    ROUND((COALESCE(h.quantity, 0) + COALESCE(h.t1_quantity, 0)) * (COALESCE(h.last_price, h.close_price) - h.average_price) * 1000000) / 1000000
        AS unrealised_pnl,
    ROUND((COALESCE(h.quantity, 0) + COALESCE(h.t1_quantity, 0)) * (COALESCE(h.last_price, h.close_price) - h.close_price) * 1000000) / 1000000 AS day_pnl,
    (COALESCE(h.quantity, 0) + COALESCE(h.t1_quantity, 0)) * COALESCE(h.last_price, h.close_price) / NULLIF((
        SELECT t.holdings_value
        FROM snapshot_totals t
        WHERE t.snapshot_id = h.snapshot_id), 0) AS weight,
    CASE WHEN c.previous_snapshot_id IS NOT NULL
        THEN COALESCE(p.quantity, 0) + COALESCE(p.t1_quantity, 0)
    END AS previous_quantity,
    CASE WHEN c.previous_snapshot_id IS NOT NULL
        THEN (COALESCE(h.quantity, 0) + COALESCE(h.t1_quantity, 0)) - (COALESCE(p.quantity, 0) + COALESCE(p.t1_quantity, 0))
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
