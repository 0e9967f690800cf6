-- Fill ledger_flows for one account's complete snapshots of :start and after (which
-- must have no row there yet: store deletes them first) whose cash flows its imported
-- ledger covers, with that flow (see portfolio_daily's cash_flow). store runs it in the
-- transaction that writes a snapshot (from that session: the snapshot after it gets
-- another previous snapshot) and, from the account's first session, in the one that
-- imports a ledger file; then the account's snapshot_nav rows are recomputed from the
-- first snapshot whose flow changed.
INSERT INTO ledger_flows (snapshot_id, account, snapshot_date, previous_snapshot_date,
                          cash_flow)
WITH
files AS (
    SELECT
        id, first_date, last_date,
        CASE WHEN first_date <= MAX(last_date) OVER (
                ORDER BY first_date, last_date, id
                ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING)
            THEN 0 ELSE 1
        END AS starts
    FROM console_files
    WHERE account = :account AND kind = 'ledger' AND first_date IS NOT NULL
),
numbered AS (
    SELECT
        first_date, last_date,
        SUM(starts) OVER (ORDER BY first_date, last_date, id
                          ROWS UNBOUNDED PRECEDING) AS stretch
    FROM files
),
coverage AS (
    SELECT MIN(first_date) AS from_date, MAX(last_date) AS to_date
    FROM numbered
    GROUP BY stretch
),
series AS (
    SELECT
        t.snapshot_id, t.account, t.snapshot_date, t.cash_flow,
        LAG(t.snapshot_date) OVER (ORDER BY t.snapshot_date) AS previous_snapshot_date,
        LAG(t.cash_flow) OVER (ORDER BY t.snapshot_date) AS previous_cash_flow
    FROM snapshot_totals t
    JOIN snapshots s
        ON s.account = t.account AND s.snapshot_date = t.snapshot_date
        AND s.id = t.snapshot_id
    WHERE t.account = :account AND s.status = 'ok'
        AND t.snapshot_date >= COALESCE((  -- from the previous snapshot (only complete
            SELECT MAX(p.snapshot_date)    -- snapshots have totals): one index probe
            FROM snapshot_totals p
            WHERE p.account = :account AND p.snapshot_date < :start), :start)
)
SELECT
    c.snapshot_id, c.account, c.snapshot_date, c.previous_snapshot_date,
    ROUND((c.cash_flow - c.previous_cash_flow + COALESCE((
        SELECT SUM(l.amount)
        FROM ledger_entries l
        WHERE l.account = c.account AND l.kind IN ('deposit', 'withdrawal')
            AND l.posting_date >= c.previous_snapshot_date
            AND l.posting_date < c.snapshot_date), 0)) * 1000000) / 1000000
FROM series c
JOIN coverage v
    ON v.from_date <= c.previous_snapshot_date AND c.snapshot_date <= v.to_date
WHERE c.snapshot_date >= :start
