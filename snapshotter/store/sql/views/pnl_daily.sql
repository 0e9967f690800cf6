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
