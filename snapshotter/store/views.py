"""SQL views over the snapshot tables, and the SQL that fills the derived tables.

The views are part of the public SQL interface (docs/schema.md, "Views", says what
each answers). Their SQL is application code, one file per object under ``sql/``:
``sql/views/NAME.sql`` (a CREATE VIEW) and ``sql/fills/TABLE.sql`` (the INSERT ... SELECT
that fills a derived table; ``store`` runs it). After every migration (``migrations/env.py``)
the views are dropped and recreated from these files in ``VIEWS`` order, and a derived
table whose fill SQL changed since it was built is rebuilt (``refresh``; the
``sql_fingerprints`` table remembers what it was built with). So changing a formula is
one edit here, and `snapshotter db upgrade` (or any run) applies it. Migrations up to
0016 keep frozen copies of the texts of their time, for their own upgrade and downgrade.

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
through an aggregate over a UNION, hence the shapes of the views).
"""

from __future__ import annotations

import hashlib
from datetime import date
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from snapshotter.routes import Kind, kinds
from snapshotter.store.models import SQL_TYPES, SqlFingerprint

SQL_DIR = Path(__file__).resolve().parent / "sql"

VIEW_NAMES = (
    "portfolio_daily", "household_daily", "portfolio_daily_all", "pnl_daily",
    "holding_daily", "realised_estimate", "corporate_actions", "reconciliation",
    "nav_daily", "nav_daily_all", "trade_reconciliation",
)
"""Every view, in dependency order (a view after those it reads): created in this order,
dropped in the reverse."""

FILLED_TABLES = ("snapshot_totals", "ledger_flows", "snapshot_nav")
"""The derived tables, in dependency order: ledger_flows reads snapshot_totals,
snapshot_nav reads portfolio_daily (both)."""


def _read(path: Path) -> str:
    """A SQL file's text without its leading ``--`` comment lines (what it is for)."""
    lines = path.read_text(encoding="utf-8").splitlines(keepends=True)
    while lines and lines[0].startswith("--"):
        lines.pop(0)
    return "".join(lines)


VIEWS: dict[str, str] = {name: _read(SQL_DIR / "views" / f"{name}.sql")
                         for name in VIEW_NAMES}
"""name -> CREATE VIEW text, in dependency order."""

FILLS: dict[str, str] = {table: _read(SQL_DIR / "fills" / f"{table}.sql")
                         for table in FILLED_TABLES}
"""derived table -> the INSERT ... SELECT that fills it (see each file's comment)."""

SNAPSHOT_TOTALS = FILLS["snapshot_totals"]
LEDGER_FLOWS = FILLS["ledger_flows"]
SNAPSHOT_NAV = FILLS["snapshot_nav"]


# Each view's columns, in order, with their kinds (the route table's vocabulary), for
# readers that need types the database does not give (SQLite returns a date as text and
# a NULL as no type at all): `snapshotter export` types its Parquet files from these.
# ``final``, ``is_estimate`` and household_daily's flags are 0/1 in SQL, booleans here.
# tests/test_outputs.py checks that these are the columns the views have.
_KEY = "account: str; snapshot_date: date; snapshot_id: int"
_MONEY = ("holdings_invested, holdings_value, holdings_unrealised_pnl, holdings_day_pnl, "
          "mf_invested, mf_value, positions_pnl, positions_m2m, cash, cash_flow, "
          "total_value: float")
COLUMNS: dict[str, dict[str, Kind]] = {  # in VIEWS order
    "portfolio_daily": kinds(f"{_KEY}; final: bool; {_MONEY}; cash_flow_source: str"),
    "household_daily": kinds(
        "account: str; snapshot_date, source_snapshot_date: date; carried, joined, leaving: "
        f"bool; {_MONEY}"),
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
}


def typed_columns(view: str) -> list[sa.ColumnClause[Any]]:
    """The view's columns for ``sa.select(...).select_from(sa.table(view))``, typed so
    that both databases give the same Python values (dates as dates, floats as floats)."""
    return [sa.column(name, SQL_TYPES[kind]()) for name, kind in COLUMNS[view].items()]


# --- the repeatable step, after every migration ----------------------------------------

def fingerprint(sql: str) -> str:
    """What ``sql_fingerprints`` records of a SQL text (migration 0017 computes it the
    same way)."""
    return hashlib.sha256(sql.encode("utf-8")).hexdigest()


def fingerprints() -> dict[str, str]:
    """name -> fingerprint of the SQL this version runs: ``views`` (all of them, in
    order) and each derived table's fill."""
    return {"views": fingerprint("".join(VIEWS.values())),
            **{table: fingerprint(sql) for table, sql in FILLS.items()}}


def recorded_fingerprints(conn: sa.Connection) -> dict[str, str]:
    rows = conn.execute(sa.select(SqlFingerprint.name, SqlFingerprint.sha256))
    return {name: sha for name, sha in rows}


def up_to_date(conn: sa.Connection) -> bool:
    """The database's views and derived tables were built with this version's SQL."""
    return recorded_fingerprints(conn) == fingerprints()


def drop_views(conn: sa.Connection) -> None:
    for name in reversed(VIEW_NAMES):
        conn.execute(sa.text(f"DROP VIEW IF EXISTS {name}"))


def refresh(conn: sa.Connection) -> list[str]:
    """The views recreated from ``VIEWS`` (dropped first), and each derived table whose
    fill SQL differs from the one it was built with rebuilt, with every table after it
    in ``FILLED_TABLES`` (they read it); the fingerprints recorded. Returns the tables
    rebuilt. Runs in the caller's transaction (the migration's)."""
    drop_views(conn)
    for sql in VIEWS.values():
        conn.execute(sa.text(sql))
    recorded = recorded_fingerprints(conn)
    current = fingerprints()
    changed = [t for t in FILLED_TABLES if recorded.get(t) != current[t]]
    rebuilt = list(FILLED_TABLES[FILLED_TABLES.index(changed[0]):]) if changed else []
    for table in rebuilt:
        _rebuild(conn, table)
    conn.execute(sa.delete(SqlFingerprint))
    conn.execute(sa.insert(SqlFingerprint),
                 [{"name": name, "sha256": sha} for name, sha in current.items()])
    return rebuilt


def _rebuild(conn: sa.Connection, table: str) -> None:
    """Every row of a derived table, recomputed with this version's fill SQL."""
    conn.execute(sa.text(f"DELETE FROM {table}"))
    if table == "snapshot_totals":
        first, last = conn.execute(sa.text("SELECT MIN(id), MAX(id) FROM snapshots")).one()
        if first is not None:
            conn.execute(sa.text(SNAPSHOT_TOTALS), {"first_id": first, "last_id": last})
        return
    accounts = conn.execute(sa.text(
        "SELECT DISTINCT account FROM snapshots ORDER BY account")).scalars().all()
    for account in accounts:
        conn.execute(sa.text(FILLS[table]), {"account": account, "start": date.min})
