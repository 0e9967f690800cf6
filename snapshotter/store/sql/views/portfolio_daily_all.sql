CREATE VIEW portfolio_daily_all AS
SELECT
    snapshot_date,
    SUM(1 - carried - leaving) AS accounts,
    SUM(ROUND(holdings_invested * 1000000)) / 1000000 AS holdings_invested,
    SUM(ROUND(holdings_value * 1000000)) / 1000000 AS holdings_value,
    SUM(ROUND(holdings_unrealised_pnl * 1000000)) / 1000000 AS holdings_unrealised_pnl,
    SUM(ROUND(holdings_day_pnl * 1000000)) / 1000000 AS holdings_day_pnl,
    SUM(ROUND(mf_invested * 1000000)) / 1000000 AS mf_invested,
    SUM(ROUND(mf_value * 1000000)) / 1000000 AS mf_value,
    SUM(ROUND(positions_pnl * 1000000)) / 1000000 AS positions_pnl,
    SUM(ROUND(positions_m2m * 1000000)) / 1000000 AS positions_m2m,
    SUM(ROUND(cash * 1000000)) / 1000000 AS cash,
    SUM(ROUND(cash_flow * 1000000)) / 1000000 AS cash_flow,
    SUM(ROUND(total_value * 1000000)) / 1000000 AS total_value,
    SUM(carried) AS accounts_carried,
    SUM(joined) AS accounts_joined,
    SUM(leaving) AS accounts_left
FROM household_daily
GROUP BY snapshot_date
