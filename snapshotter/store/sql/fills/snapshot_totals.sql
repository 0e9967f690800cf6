-- Fill snapshot_totals for the complete snapshots whose id is in [:first_id, :last_id]
-- (which must have no row there yet): store runs it for each snapshot it stores or
-- re-derives, in the same transaction as the rows (first_id = last_id = its id);
-- views.refresh runs it over all snapshots when this text changed.
--
-- These are the per-snapshot sums portfolio_daily shows, with its formulas and rounding
-- (see that view): each a correlated subquery on the snapshot's rows (by account,
-- snapshot_date and snapshot id, as the views join them), so that it reads one snapshot's
-- rows whatever the range. A part without rows sums to 0.
INSERT INTO snapshot_totals (
    snapshot_id, account, snapshot_date, holdings_invested, holdings_value, holdings_day_pnl,
    mf_invested, mf_value, positions_pnl, positions_m2m, cash, cash_flow)
SELECT
    s.id, s.account, s.snapshot_date,
    (SELECT ROUND(COALESCE(SUM((COALESCE(h.quantity, 0) + COALESCE(h.t1_quantity, 0))
                               * h.average_price), 0) * 1000000) / 1000000
     FROM holdings h
     WHERE h.account = s.account AND h.snapshot_date = s.snapshot_date
         AND h.snapshot_id = s.id),
    (SELECT ROUND(COALESCE(SUM((COALESCE(h.quantity, 0) + COALESCE(h.t1_quantity, 0))
                               * COALESCE(h.last_price, h.close_price)), 0) * 1000000)
            / 1000000
     FROM holdings h
     WHERE h.account = s.account AND h.snapshot_date = s.snapshot_date
         AND h.snapshot_id = s.id),
    (SELECT ROUND(COALESCE(SUM((COALESCE(h.quantity, 0) + COALESCE(h.t1_quantity, 0))
                               * (COALESCE(h.last_price, h.close_price) - h.close_price)), 0)
                  * 1000000) / 1000000
     FROM holdings h
     WHERE h.account = s.account AND h.snapshot_date = s.snapshot_date
         AND h.snapshot_id = s.id),
    (SELECT ROUND(COALESCE(SUM(CASE WHEN ABS(ROUND(m.invested) - m.invested) = 0.5
                                   THEN m.invested + 0.5
                                   ELSE ROUND(m.invested) END) / 1000000, 0)
                  * 1000000) / 1000000
     FROM (
         SELECT quantity * average_price * 1000000 AS invested
         FROM mf_holdings
         WHERE account = s.account AND snapshot_date = s.snapshot_date
             AND snapshot_id = s.id
     ) m),
    (SELECT ROUND(COALESCE(SUM(CASE WHEN ABS(ROUND(m.value) - m.value) = 0.5
                                   THEN m.value + 0.5
                                   ELSE ROUND(m.value) END) / 1000000, 0)
                  * 1000000) / 1000000
     FROM (
         SELECT quantity * COALESCE(last_price, average_price) * 1000000 AS value
         FROM mf_holdings
         WHERE account = s.account AND snapshot_date = s.snapshot_date
             AND snapshot_id = s.id
     ) m),
    (SELECT ROUND(COALESCE(SUM(p.pnl), 0) * 1000000) / 1000000
     FROM positions p
     WHERE p.account = s.account AND p.snapshot_date = s.snapshot_date
         AND p.position_type = 'net' AND p.snapshot_id = s.id),
    (SELECT ROUND(COALESCE(SUM(CASE WHEN COALESCE(p.product, '') <> 'CNC' THEN p.m2m END), 0)
                  * 1000000) / 1000000
     FROM positions p
     WHERE p.account = s.account AND p.snapshot_date = s.snapshot_date
         AND p.position_type = 'net' AND p.snapshot_id = s.id),
    (SELECT ROUND(COALESCE(SUM(COALESCE(f.cash, 0) - COALESCE(f.payout, 0)), 0) * 1000000)
            / 1000000
     FROM funds f
     WHERE f.account = s.account AND f.snapshot_date = s.snapshot_date
         AND f.snapshot_id = s.id),
    (SELECT ROUND(COALESCE(SUM(COALESCE(f.intraday_payin, 0) - COALESCE(f.payout, 0)), 0)
                  * 1000000) / 1000000
     FROM funds f
     WHERE f.account = s.account AND f.snapshot_date = s.snapshot_date
         AND f.snapshot_id = s.id)
FROM snapshots s
WHERE s.status = 'ok' AND s.id BETWEEN :first_id AND :last_id
