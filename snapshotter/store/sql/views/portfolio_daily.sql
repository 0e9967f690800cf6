CREATE VIEW portfolio_daily AS
SELECT
    t.account, t.snapshot_date, t.snapshot_id,
    CASE WHEN s.final THEN 1 ELSE 0 END AS final,
    t.holdings_invested, t.holdings_value,
    ROUND((t.holdings_value - t.holdings_invested) * 1000000) / 1000000
        AS holdings_unrealised_pnl,
    t.holdings_day_pnl, t.mf_invested, t.mf_value, t.positions_pnl, t.positions_m2m,
    t.cash, COALESCE(f.cash_flow, t.cash_flow) AS cash_flow,
    ROUND((t.holdings_value + t.mf_value + t.cash + t.positions_m2m) * 1000000) / 1000000
        AS total_value,
    CASE WHEN f.snapshot_id IS NULL THEN 'snapshot' ELSE 'ledger' END AS cash_flow_source
FROM snapshot_totals t
JOIN snapshots s
    ON s.account = t.account AND s.snapshot_date = t.snapshot_date AND s.id = t.snapshot_id
LEFT JOIN ledger_flows f ON f.snapshot_id = t.snapshot_id
WHERE s.status = 'ok'
