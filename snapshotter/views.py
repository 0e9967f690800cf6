"""SQL views over the snapshot tables: the current definitions, as CREATE VIEW texts.

The views are part of the public SQL interface (README.md, "Views"). They are created
by Alembic migrations, never from this module: each migration that creates or changes a
view holds its own frozen copy of the SQL (migration 0002 created all of these), so that
old migrations keep meaning what they meant. To change a view, edit it here AND add a
migration that drops and recreates it (and the views built on it) with the new text;
``tests/test_views.py`` fails while the newest migrated text of a view differs from this
module.

One SQL text serves SQLite and PostgreSQL, and both give the same results:

- only portable SQL: window functions, ``COALESCE``, ``NULLIF``, ``CASE``, ``ROUND(x)``,
  ``LN`` and ``EXP`` (built into PostgreSQL; in SQLite 3.35+ when it is compiled with its
  math functions, as Debian's is: ``tests/test_views.py`` checks). Not ``FLOOR``: on
  SQLite, SQLAlchemy replaces it on every connection with Python's ``math.floor``, which
  returns integers (then ``/`` divides as integers) and raises on NULL;
- no integer division (``CAST(... AS DOUBLE PRECISION)`` where both sides are integers),
  and no division that can see a zero (PostgreSQL raises), guarded with ``CASE``/``NULLIF``
  rather than ``AND`` (whose evaluation order PostgreSQL does not promise);
- money that is summed or derived is rounded to 6 decimals, as stored values are:
  ``ROUND(x * 1000000) / 1000000`` (PostgreSQL has no ``round(double precision, int)``;
  this keeps doubles on both); the TWR index to 10. Float sums differ in their last bits
  with summation order (and SQLite 3.43+ sums with compensation): the rounding hides it,
  since the exact sums have at most 6 decimals (whole quantities times prices of at most
  6 decimals). The one exception is mutual funds: units times NAV has more decimals, and
  ``ROUND`` breaks exact ties differently (SQLite away from zero, PostgreSQL to even), so
  each MF term is rounded first, ties upwards: ``CASE WHEN ABS(ROUND(y) - y) = 0.5 THEN
  y + 0.5 ELSE ROUND(y) END``;
- booleans come out as 0/1 integers; dates are dates on PostgreSQL and ISO text on SQLite.

Only rows of complete snapshots (ledger ``status = 'ok'``) count. "The previous snapshot"
of an account is its previous complete one, however many sessions back (a failed or
missed session is a gap, never a zero). A holding in another snapshot of the account is
found by its natural key (account, snapshot_date, exchange, tradingsymbol): the rows of
a session are those of its complete snapshot (the store deletes a superseded snapshot's
rows in the transaction that supersedes it; a failed attempt stores none), and joining
on the snapshot id as well makes PostgreSQL probe the wrong index.

Speed: queries filter by ``account`` (and ``tradingsymbol``/dates). The per-snapshot sums
(``portfolio_daily``, ``holding_daily``'s weight) are not summed at query time: they are
the ``snapshot_totals`` table, one row per complete snapshot, which ``store`` fills with
``SNAPSHOT_TOTALS`` in the transaction that writes (or re-derives) the snapshot's rows,
and which goes with them when the snapshot is superseded (a snapshot's rows changed by
hand, bypassing ``store``, leave its totals stale: ``run --from-raw`` rebuilds both).
Tables are joined on (account, snapshot_date, snapshot id), and every window is
partitioned by account, so that both planners push ``account = ?`` down to the index
scans (PostgreSQL through equivalence classes, SQLite through constant propagation and
its push-down optimisation; neither pushes through the right side of a LEFT JOIN or
through an aggregate over a UNION, hence the shapes below).
"""

from __future__ import annotations

SNAPSHOT_TOTALS = """\
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
                               * h.last_price), 0) * 1000000) / 1000000
     FROM holdings h
     WHERE h.account = s.account AND h.snapshot_date = s.snapshot_date
         AND h.snapshot_id = s.id),
    (SELECT ROUND(COALESCE(SUM((COALESCE(h.quantity, 0) + COALESCE(h.t1_quantity, 0))
                               * (h.last_price - h.close_price)), 0) * 1000000) / 1000000
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
         SELECT quantity * last_price * 1000000 AS value
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
"""
"""Fill ``snapshot_totals`` for the complete snapshots whose id is in [first_id, last_id]
(which must have no row there yet): ``store`` runs it for each snapshot it stores or
re-derives, in the same transaction as the rows (first_id = last_id = its id); a
migration that (re)builds the table runs a frozen copy over all snapshots.

These are the per-snapshot sums ``portfolio_daily`` shows, with its formulas and rounding
(see that view): each a correlated subquery on the snapshot's rows (by account,
snapshot_date and snapshot id, as the views join them), so that it reads one snapshot's
rows whatever the range. A part without rows sums to 0.
"""

PORTFOLIO_DAILY = """\
CREATE VIEW portfolio_daily AS
SELECT
    t.account, t.snapshot_date, t.snapshot_id,
    CASE WHEN s.final THEN 1 ELSE 0 END AS final,
    t.holdings_invested, t.holdings_value,
    ROUND((t.holdings_value - t.holdings_invested) * 1000000) / 1000000
        AS holdings_unrealised_pnl,
    t.holdings_day_pnl, t.mf_invested, t.mf_value, t.positions_pnl, t.positions_m2m,
    t.cash, t.cash_flow,
    ROUND((t.holdings_value + t.mf_value + t.cash + t.positions_m2m) * 1000000) / 1000000
        AS total_value
FROM snapshot_totals t
JOIN snapshots s
    ON s.account = t.account AND s.snapshot_date = t.snapshot_date AND s.id = t.snapshot_id
WHERE s.status = 'ok'
"""
"""One row per account and session with a complete snapshot (a failed or missed session
has no row). ``final`` is 1 when the snapshot was taken after the close.

- ``holdings_invested`` = sum((quantity + t1_quantity) * average_price)
- ``holdings_value`` = sum((quantity + t1_quantity) * last_price)
- ``holdings_unrealised_pnl`` = holdings_value - holdings_invested
- ``holdings_day_pnl`` = sum((quantity + t1_quantity) * (last_price - close_price))
- ``mf_invested`` = sum(quantity * average_price), ``mf_value`` = sum(quantity * last_price)
  over the mutual-fund holdings
- ``positions_pnl`` = sum(pnl) over net positions; ``positions_m2m`` = sum(m2m) over net
  positions whose product is not CNC (a CNC buy already shows as a T+1 holding)
- ``cash`` = sum(cash - payout) and ``cash_flow`` = sum(intraday_payin - payout) over the
  funds segments (deposits positive, withdrawals negative)
- ``total_value`` = holdings_value + mf_value + cash + positions_m2m

A part without rows (no MF, no positions) is 0; NULL quantities and amounts count as 0.
Money is rounded to 6 decimals. The sums are read from ``snapshot_totals`` (computed by
``SNAPSHOT_TOTALS`` when the snapshot was stored).
"""

PORTFOLIO_DAILY_ALL = """\
CREATE VIEW portfolio_daily_all AS
SELECT
    snapshot_date,
    COUNT(*) AS accounts,
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
    SUM(ROUND(total_value * 1000000)) / 1000000 AS total_value
FROM portfolio_daily
GROUP BY snapshot_date
"""
"""``portfolio_daily`` summed over accounts, one row per session; ``accounts`` is how many
accounts have a complete snapshot of that session (and so contributed). Sums of whole
micro-rupees (exact in a double), so the result does not depend on summation order."""

PNL_DAILY = """\
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
"""
"""Day-on-day P&L and time-weighted return per account, one row per ``portfolio_daily`` row.

- ``previous_snapshot_date``/``previous_total_value``: the account's previous complete
  snapshot, however many sessions back (a failed or missed session is a gap, not a zero)
- ``value_change`` = total_value - previous total_value
- ``cash_flow`` = that day's intraday_payin - payout (from ``portfolio_daily``)
- ``market_pnl`` = value_change - cash_flow
- ``daily_return`` = market_pnl / previous total_value; NULL when the previous
  total_value is 0 or less, or when the return would be -100% or worse
- ``twr_index`` = product of (1 + daily_return) since the account's first snapshot, which
  is 1.0; a NULL return carries the index forward (rounded to 10 decimals)
- ``drawdown`` = twr_index / running maximum of twr_index - 1 (0 at a new high)

On an account's first snapshot the previous_*, value_change, market_pnl and daily_return
columns are NULL, twr_index is 1.0 and drawdown 0.
"""

HOLDING_DAILY = """\
CREATE VIEW holding_daily AS
SELECT
    h.account, h.snapshot_date, h.snapshot_id, c.previous_snapshot_date,
    h.exchange, h.tradingsymbol, h.isin,
    COALESCE(h.quantity, 0) + COALESCE(h.t1_quantity, 0) AS quantity,
    h.t1_quantity,
    h.average_price,
    h.last_price AS price,
    h.close_price,
    (COALESCE(h.quantity, 0) + COALESCE(h.t1_quantity, 0)) * h.average_price AS invested,
    (COALESCE(h.quantity, 0) + COALESCE(h.t1_quantity, 0)) * h.last_price AS value,
    (COALESCE(h.quantity, 0) + COALESCE(h.t1_quantity, 0))
        * (h.last_price - h.average_price) AS unrealised_pnl,
    (COALESCE(h.quantity, 0) + COALESCE(h.t1_quantity, 0))
        * (h.last_price - h.close_price) AS day_pnl,
    (COALESCE(h.quantity, 0) + COALESCE(h.t1_quantity, 0)) * h.last_price / NULLIF((
        SELECT t.holdings_value
        FROM snapshot_totals t
        WHERE t.snapshot_id = h.snapshot_id), 0) AS weight,
    CASE WHEN c.previous_snapshot_id IS NOT NULL
        THEN COALESCE(p.quantity, 0) + COALESCE(p.t1_quantity, 0)
    END AS previous_quantity,
    CASE WHEN c.previous_snapshot_id IS NOT NULL
        THEN COALESCE(h.quantity, 0) + COALESCE(h.t1_quantity, 0)
            - (COALESCE(p.quantity, 0) + COALESCE(p.t1_quantity, 0))
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
"""
"""One row per account, session and instrument (exchange, tradingsymbol) held.

- ``quantity`` = quantity + t1_quantity (the holding as Kite shows it; ``t1_quantity``
  is the part bought but not yet delivered)
- ``average_price``, ``price`` (last_price), ``close_price`` (previous session's close)
- ``invested`` = quantity * average_price, ``value`` = quantity * price,
  ``unrealised_pnl`` = quantity * (price - average_price),
  ``day_pnl`` = quantity * (price - close_price)
- ``weight`` = value / the account's holdings value that session (NULL when that is 0)
- ``previous_quantity`` and ``quantity_change`` = quantity - previous_quantity, against
  the account's previous complete snapshot (``previous_snapshot_date``); an instrument
  not held then counts 0. NULL on the account's first snapshot.

An instrument sold out entirely has no row on the session it is gone (see
``realised_estimate``).
"""

REALISED_ESTIMATE = """\
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
        COALESCE(n.close_price, o.last_price) AS close_price,
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
"""
"""An ESTIMATE of realised P&L (``is_estimate`` = 1): Kite's holdings do not say what was
sold at what price, so this infers it from consecutive complete snapshots of an account.

One row per instrument whose quantity (quantity + t1_quantity) fell from the previous
complete snapshot (``previous_snapshot_date``) to this one (a holding gone counts 0):
``quantity_sold`` = the fall. ``sell_price`` is the average sell price of that day's
``day`` positions for the instrument (day_sell_price, else sell_price, where the sell
quantity is > 0), else the previous snapshot's day positions (``price_source`` =
'day_position'); else (``price_source`` = 'close') the new snapshot's close_price while
the holding still exists, the old snapshot's last_price when it is gone (or has none).
``realised_pnl_estimate`` = quantity_sold * (sell_price - the old average_price).
Only decreases count (a split or bonus raises the quantity: see ``corporate_actions``).
"""

CORPORATE_ACTIONS = """\
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
"""
"""Likely splits, bonuses and consolidations: an instrument held in two consecutive
complete snapshots of an account whose quantity (quantity + t1_quantity) changed by
``ratio`` = new / old while the average price changed by its inverse:
|ratio - 1| > 0.01 and |ratio * new_average_price / old_average_price - 1| <= 0.01.
Columns: ``ratio``, ``old_quantity``, ``new_quantity``, ``old_average_price``,
``new_average_price``, and the snapshots compared (``previous_snapshot_date``).
"""

RECONCILIATION = """\
CREATE VIEW reconciliation AS
SELECT
    account, snapshot_date, snapshot_id, exchange, tradingsymbol, field, ours, kite,
    ours - kite AS difference
FROM (
    SELECT
        h.account, h.snapshot_date, h.snapshot_id, h.exchange, h.tradingsymbol, f.field,
        CASE WHEN f.field = 'pnl'
            THEN (h.last_price - h.average_price) * COALESCE(h.quantity, 0)
            ELSE h.last_price - h.close_price
        END AS ours,
        CASE WHEN f.field = 'pnl' THEN h.pnl ELSE h.day_change END AS kite
    FROM holdings h
    JOIN snapshots s ON s.id = h.snapshot_id AND s.status = 'ok'
    CROSS JOIN (SELECT 'pnl' AS field UNION ALL SELECT 'day_change' AS field) f
) checks
WHERE ABS(ours - kite) > 1 AND ABS(ours - kite) > 0.005 * ABS(kite)
"""
"""Holdings where Kite's own figures disagree with ours (complete snapshots only).

``field`` 'pnl': ours = (last_price - average_price) * quantity, kite = pnl;
``field`` 'day_change': ours = last_price - close_price (per share), kite = day_change.
Listed when |ours - kite| > 1 and |ours - kite| > 0.5% of |kite|;
``difference`` = ours - kite.
"""

VIEWS: dict[str, str] = {
    "portfolio_daily": PORTFOLIO_DAILY,
    "portfolio_daily_all": PORTFOLIO_DAILY_ALL,
    "pnl_daily": PNL_DAILY,
    "holding_daily": HOLDING_DAILY,
    "realised_estimate": REALISED_ESTIMATE,
    "corporate_actions": CORPORATE_ACTIONS,
    "reconciliation": RECONCILIATION,
}
"""Every view, in creation order (a view after the views it reads); drop in reverse."""
