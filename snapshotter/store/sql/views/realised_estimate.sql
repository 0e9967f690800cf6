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
