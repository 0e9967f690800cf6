CREATE VIEW nav_daily AS
SELECT
    p.account, p.snapshot_date, p.snapshot_id, p.total_value, p.cash_flow, n.units, n.nav,
    p.cash_flow_source
FROM portfolio_daily p
JOIN snapshot_nav n
    ON n.account = p.account AND n.snapshot_date = p.snapshot_date
    AND n.snapshot_id = p.snapshot_id
