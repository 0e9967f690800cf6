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
