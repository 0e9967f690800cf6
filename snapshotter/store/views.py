"""SQL views over the snapshot tables: the current definitions, as CREATE VIEW texts.

The views are part of the public SQL interface (README.md, "Views"). Their SQL lives
in the Alembic migrations, and only there: each migration that creates or changes a view
holds its text in a ``VIEWS`` dict (and the SQL that fills ``snapshot_totals`` as
``SNAPSHOT_TOTALS``), so old migrations keep meaning what they meant. This module reads
the newest text of each from the migrations (``VIEWS``, ``SNAPSHOT_TOTALS``; store runs
the latter) and documents every view (``DOCS``). To change a view, add a migration that
drops and recreates it (and the views built on it) with the new text.

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
Likewise the NAV recursion of ``nav_daily`` is the ``snapshot_nav`` table, which
``store`` fills with ``SNAPSHOT_NAV`` for the account from the session it writes onwards
(``nav_daily_all``, one row a session, recurses at query time: migration 0008 says why),
and the cash flows the imported ledger gives the snapshots it covers are the
``ledger_flows`` table (``LEDGER_FLOWS``; migration 0010), which ``portfolio_daily``
joins by snapshot id.
Tables are joined on (account, snapshot_date, snapshot id), and every window is
partitioned by account, so that both planners push ``account = ?`` down to the index
scans (PostgreSQL through equivalence classes, SQLite through constant propagation and
its push-down optimisation; neither pushes through the right side of a LEFT JOIN or
through an aggregate over a UNION, hence the shapes in the migrations).
"""

from __future__ import annotations

from functools import cache
from typing import Any

import sqlalchemy as sa
from alembic.script import ScriptDirectory

from snapshotter.routes import Kind, kinds
from snapshotter.store.migrate import migrations_dir
from snapshotter.store.models import _SQL_TYPES

# What the SQL that fills snapshot_totals does (the SQL is in the migrations).
SNAPSHOT_TOTALS_DOC = """\
Fill ``snapshot_totals`` for the complete snapshots whose id is in [first_id, last_id]
(which must have no row there yet): ``store`` runs it for each snapshot it stores or
re-derives, in the same transaction as the rows (first_id = last_id = its id); a
migration that (re)builds the table runs a frozen copy over all snapshots.

These are the per-snapshot sums ``portfolio_daily`` shows, with its formulas and rounding
(see that view): each a correlated subquery on the snapshot's rows (by account,
snapshot_date and snapshot id, as the views join them), so that it reads one snapshot's
rows whatever the range. A part without rows sums to 0.
"""

SNAPSHOT_NAV_DOC = """\
Fill ``snapshot_nav`` for one account's complete snapshots of ``start`` and after (which
must have no row there yet: ``store`` deletes them first), continuing the recursion of
``nav_daily`` (see that view) from the account's last ``snapshot_nav`` row before
``start``. A recursive CTE over the account's ``portfolio_daily`` rows; no rounding (the
same double operations in the same order on both databases give the same bits). ``store``
runs it in the transaction that writes a snapshot (for the newest session, one row); a
migration that (re)builds the table runs a frozen copy for every account.
"""

LEDGER_FLOWS_DOC = """\
Fill ``ledger_flows`` for one account's complete snapshots of ``start`` and after (which
must have no row there yet: ``store`` deletes them first) whose cash flows its imported
ledger covers, with that flow (see ``portfolio_daily``'s ``cash_flow``). ``store`` runs
it in the transaction that writes a snapshot (from that session: the snapshot after it
gets another previous snapshot) and, from the account's first session, in the one that
imports a ledger file; then the account's ``snapshot_nav`` rows are recomputed from the
first snapshot whose flow changed.
"""

# What each view answers, with its formulas (the SQL is in the migrations).
DOCS: dict[str, str] = {
    'portfolio_daily': """\
One row per account and session with a complete snapshot (a failed or missed session
has no row). ``final`` is 1 when the snapshot was taken after the close.

- ``holdings_invested`` = sum((quantity + t1_quantity) * average_price)
- ``holdings_value`` = sum((quantity + t1_quantity) * price), where price = last_price, or
  close_price when Kite sent none (the ledger's ``warnings`` says so)
- ``holdings_unrealised_pnl`` = holdings_value - holdings_invested
- ``holdings_day_pnl`` = sum((quantity + t1_quantity) * (price - close_price))
- ``mf_invested`` = sum(quantity * average_price), ``mf_value`` = sum(quantity *
  last_price) over the mutual-fund holdings (average_price for a fund without last_price)
- ``positions_pnl`` = sum(pnl) over net positions; ``positions_m2m`` = sum(m2m) over net
  positions whose product is not CNC (a CNC buy already shows as a T+1 holding)
- ``cash`` = sum(cash - payout) over the funds segments
- ``cash_flow``: money moved in (positive) or out (negative) since the previous complete
  snapshot. Where no imported ledger covers it (``cash_flow_source`` 'snapshot'):
  sum(intraday_payin - payout) over the funds segments, the flows Kite shows on the
  snapshot's own day. Where the ledger covers every day from the previous snapshot's
  date P to this snapshot's date D (``cash_flow_source`` 'ledger', from
  ``ledger_flows``): the ledger's deposits and withdrawals (``Bank Receipts``,
  ``Bank Payments``) posted on P .. D - 1, minus P's own intraday_payin - payout (what
  P already counted of its day), plus D's own: a flow counts once, on the first
  snapshot whose value holds it (a deposit on a day without a snapshot, or after that
  day's snapshot was taken, on the next snapshot). A ledger file covers the days from
  its first to its last posting date; an account's first snapshot keeps its own flow
- ``total_value`` = holdings_value + mf_value + cash + positions_m2m
- ``cash_flow_source``: 'ledger' or 'snapshot', as above

A part without rows (no MF, no positions) is 0; NULL quantities and amounts count as 0.
Money is rounded to 6 decimals. The sums are read from ``snapshot_totals`` (computed by
``SNAPSHOT_TOTALS`` when the snapshot was stored).
""",
    'portfolio_daily_all': """\
``household_daily`` summed per household session (a date on which some member account
has a complete snapshot): an account missing a session counts at its last value
(carried), one that joins brings its value as a flow in, one that leaves takes it out as
a flow out. ``accounts``: the members with a complete snapshot of the session;
``accounts_carried``, ``accounts_joined``, ``accounts_left``: the members carried,
joining and leaving that session. Sums of whole micro-rupees (exact in a double), so
the result does not depend on summation order.
""",
    'pnl_daily': """\
Day-on-day P&L and time-weighted return per account, one row per ``portfolio_daily`` row.

- ``previous_snapshot_date``/``previous_total_value``: the account's previous complete
  snapshot, however many sessions back (a failed or missed session is a gap, not a zero)
- ``value_change`` = total_value - previous total_value
- ``cash_flow``: the money moved in or out since the previous snapshot (from
  ``portfolio_daily``: that day's intraday_payin - payout, or the imported ledger's
  flows where it covers the days since the previous snapshot)
- ``market_pnl`` = value_change - cash_flow
- ``daily_return`` = market_pnl / previous total_value; NULL when the previous
  total_value is 0 or less, or when the return would be -100% or worse
- ``twr_index`` = product of (1 + daily_return) since the account's first snapshot, which
  is 1.0; a NULL return carries the index forward (rounded to 10 decimals)
- ``drawdown`` = twr_index / running maximum of twr_index - 1 (0 at a new high)

On an account's first snapshot the previous_*, value_change, market_pnl and daily_return
columns are NULL, twr_index is 1.0 and drawdown 0.
""",
    'holding_daily': """\
One row per account, session and instrument (exchange, tradingsymbol) held.

- ``quantity`` = quantity + t1_quantity (the holding as Kite shows it; ``t1_quantity``
  is the part bought but not yet delivered)
- ``average_price``, ``price`` (last_price; close_price when Kite sent none),
  ``close_price`` (previous session's close)
- ``invested`` = quantity * average_price, ``value`` = quantity * price,
  ``unrealised_pnl`` = quantity * (price - average_price),
  ``day_pnl`` = quantity * (price - close_price)
- ``weight`` = value / the account's holdings value that session (NULL when that is 0)
- ``previous_quantity`` and ``quantity_change`` = quantity - previous_quantity, against
  the account's previous complete snapshot (``previous_snapshot_date``); an instrument
  not held then counts 0. NULL on the account's first snapshot.

An instrument sold out entirely has no row on the session it is gone (see
``realised_estimate``).
""",
    'realised_estimate': """\
An ESTIMATE of realised P&L (``is_estimate`` = 1): Kite's holdings do not say what was
sold at what price, so this infers it from consecutive complete snapshots of an account.

One row per instrument whose quantity (quantity + t1_quantity) fell from the previous
complete snapshot (``previous_snapshot_date``) to this one (a holding gone counts 0):
``quantity_sold`` = the fall. ``sell_price`` is the average sell price of that day's
``day`` positions for the instrument (day_sell_price, else sell_price, where the sell
quantity is > 0), else the previous snapshot's day positions (``price_source`` =
'day_position'); else (``price_source`` = 'close') the new snapshot's close_price while
the holding still exists, the old snapshot's last_price when it is gone (or has none;
its close_price when it had no last_price either).
``realised_pnl_estimate`` = quantity_sold * (sell_price - the old average_price).
Only decreases count (a split or bonus raises the quantity: see ``corporate_actions``).
""",
    'corporate_actions': """\
Likely splits, bonuses and consolidations: an instrument held in two consecutive
complete snapshots of an account whose quantity (quantity + t1_quantity) changed by
``ratio`` = new / old while the average price changed by its inverse:
|ratio - 1| > 0.01 and |ratio * new_average_price / old_average_price - 1| <= 0.01.
Columns: ``ratio``, ``old_quantity``, ``new_quantity``, ``old_average_price``,
``new_average_price``, and the snapshots compared (``previous_snapshot_date``).
""",
    'reconciliation': """\
Holdings where Kite's own figures disagree with ours (complete snapshots only).

``field`` 'pnl': ours = (last_price - average_price) * quantity, kite = pnl;
``field`` 'day_change': ours = last_price - close_price (per share), kite = day_change.
Listed when |ours - kite| > 1 and |ours - kite| > 0.5% of |kite|;
``difference`` = ours - kite. A holding Kite sent without last_price has no row here.
""",
    'nav_daily': """\
NAV units per account, as Zerodha Console's Performance Curve counts them: one row per
``portfolio_daily`` row (complete snapshots; a failed or missed session is a gap, and
the previous row is the previous complete snapshot), with its ``total_value``,
``cash_flow`` (V and f below; the imported ledger's flows where it covers them) and
``cash_flow_source`` (as in ``portfolio_daily``), ``units`` and ``nav``:

- first row with V > 0: nav = 1000, units = V / 1000
- then, from the previous row's units_prev and nav_prev:
  - f > 0 (deposit, bought at the previous NAV): units = units_prev + f / nav_prev,
    nav = V / units
  - f < 0 (withdrawal, sold at today's NAV): nav = (V - f) / units_prev,
    units = units_prev + f / nav
  - f = 0: units = units_prev, nav = V / units
- V <= 0 (or units that would be <= 0): units and nav are NULL, and the series starts
  again at 1000 on the next row with V > 0

So nav moves only with the market: nav / previous nav - 1 is the day's return, with a
deposit counted as invested from the start of its day (V / (V_prev + f) - 1) and a
withdrawal as taken out at its end ((V - f) / V_prev - 1, as ``pnl_daily``'s
daily_return). Not rounded (see ``SNAPSHOT_NAV_DOC``); read from ``snapshot_nav``.
""",
    'nav_daily_all': """\
``nav_daily``'s recursion over ``portfolio_daily_all`` (the household's value and flows
per session: a carried account at its last value, joins and leaves as flows), one row a
session with ``accounts``, ``accounts_carried``, ``accounts_joined``, ``accounts_left``
as there. Computed at query time (a recursive CTE over one row a session).
""",
    'trade_reconciliation': """\
Where the imported trades (``snapshotter import tradebook``) and the snapshots disagree:
per account, complete snapshot and instrument (the ISIN, or the symbol when it is
blank), ``trades_quantity`` (what the FIFO lots hold that day, after splits and
bonuses: ``trade_positions``) against ``holdings_quantity`` (quantity + t1_quantity,
summed over exchanges); ``difference`` = holdings - trades. Only differences are rows,
and only from the account's first trade on (before it the trades say nothing).
""",
    'household_daily': """\
The all-accounts (ALL) figures' parts: one row per member account and household session.
A member is an account from its first complete snapshot until it leaves
(``household_leaves``: `snapshotter household leave`); the household's sessions are the
dates on which some member has a complete snapshot. On each, the member's
``portfolio_daily`` money columns, from ``source_snapshot_date``:

- its own complete snapshot of the session: its figures and ``cash_flow``; on its first
  one, when the household had an earlier session, ``joined`` = 1 and ``cash_flow`` is
  its whole total_value (money arriving, not market gain);
- none (a failed, skipped or missed login): ``carried`` = 1, the figures of its last
  complete snapshot before the session, ``cash_flow`` 0 and ``holdings_day_pnl`` 0 (it
  moves no household figure; its next snapshot's move, against the carried value, is its
  own ``pnl_daily`` market P&L across the gap);
- the first household session on or after ``left_on``: ``leaving`` = 1, every figure 0
  and ``cash_flow`` = minus its last value counted (its last complete snapshot before
  ``left_on``): it leaves as a withdrawal. Its snapshots from ``left_on`` on count no more.
""",
}


# Each view's columns, in order, with their kinds (the route table's vocabulary), for
# readers that need types the database does not give (SQLite returns a date as text and
# a NULL as no type at all): `snapshotter export` types its Parquet files from these.
# ``final``, ``is_estimate`` and household_daily's flags are 0/1 in SQL, booleans here.
# tests/test_outputs.py checks that these are the columns the views have.
_KEY = "account: str; snapshot_date: date; snapshot_id: int"
_MONEY = ("holdings_invested, holdings_value, holdings_unrealised_pnl, holdings_day_pnl, "
          "mf_invested, mf_value, positions_pnl, positions_m2m, cash, cash_flow, "
          "total_value: float")
COLUMNS: dict[str, dict[str, Kind]] = {
    "portfolio_daily": kinds(f"{_KEY}; final: bool; {_MONEY}; cash_flow_source: str"),
    "portfolio_daily_all": kinds(
        f"snapshot_date: date; accounts: int; {_MONEY}; accounts_carried, accounts_joined, "
        "accounts_left: int"),
    "pnl_daily": kinds(
        f"{_KEY}; previous_snapshot_date: date; previous_total_value, total_value, "
        "value_change, cash_flow, market_pnl, daily_return, twr_index, drawdown: float"),
    "holding_daily": kinds(
        f"{_KEY}; previous_snapshot_date: date; exchange, tradingsymbol, isin: str; "
        "quantity, t1_quantity: int; average_price, price, close_price, invested, value, "
        "unrealised_pnl, day_pnl, weight: float; previous_quantity, quantity_change: int"),
    "realised_estimate": kinds(
        f"{_KEY}; previous_snapshot_date: date; exchange, tradingsymbol: str; "
        "previous_quantity, quantity, quantity_sold: int; sell_price: float; "
        "price_source: str; average_price, realised_pnl_estimate: float; is_estimate: bool"),
    "corporate_actions": kinds(
        f"{_KEY}; previous_snapshot_date: date; exchange, tradingsymbol: str; "
        "ratio: float; old_quantity, new_quantity: int; "
        "old_average_price, new_average_price: float"),
    "reconciliation": kinds(
        f"{_KEY}; exchange, tradingsymbol, field: str; ours, kite, difference: float"),
    "nav_daily": kinds(
        f"{_KEY}; total_value, cash_flow, units, nav: float; cash_flow_source: str"),
    "nav_daily_all": kinds(
        "snapshot_date: date; accounts: int; total_value, cash_flow, units, nav: float; "
        "accounts_carried, accounts_joined, accounts_left: int"),
    "trade_reconciliation": kinds(
        "account: str; snapshot_date: date; instrument, tradingsymbol, isin: str; "
        "trades_quantity, holdings_quantity, difference: float"),
    "household_daily": kinds(
        "account: str; snapshot_date, source_snapshot_date: date; carried, joined, leaving: "
        f"bool; {_MONEY}"),
}


def typed_columns(view: str) -> list[sa.ColumnClause[Any]]:
    """The view's columns for ``sa.select(...).select_from(sa.table(view))``, typed so
    that both databases give the same Python values (dates as dates, floats as floats)."""
    return [sa.column(name, _SQL_TYPES[kind]()) for name, kind in COLUMNS[view].items()]


@cache
def _migrated() -> tuple[dict[str, str], dict[str, str]]:
    views: dict[str, str] = {}
    fills: dict[str, str] = {}
    scripts = ScriptDirectory(str(migrations_dir()))
    for revision in reversed(list(scripts.walk_revisions())):  # oldest first
        views.update(getattr(revision.module, "VIEWS", {}))
        for name in FILLS:
            fills[name] = getattr(revision.module, name, fills.get(name, ""))
    return views, fills


FILLS = ("SNAPSHOT_TOTALS", "SNAPSHOT_NAV", "LEDGER_FLOWS")
"""The SQL texts that fill the derived tables (``store`` runs them)."""


def __getattr__(name: str) -> Any:
    """``VIEWS`` (name -> CREATE VIEW text, in creation order), ``SNAPSHOT_TOTALS``,
    ``SNAPSHOT_NAV`` and ``LEDGER_FLOWS``: the newest text of each, as the migrations
    hold it."""
    if name == "VIEWS":
        return _migrated()[0]
    if name in FILLS:
        return _migrated()[1][name]
    raise AttributeError(name)
