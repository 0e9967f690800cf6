"""NAV units and `report performance` over 10 years of 50 accounts.

Builds (after running the migrations) 50 accounts x ~2,500 NSE sessions of synthetic
history (bench_views' generator with one holding each: the NAV depends only on each
snapshot's total value and cash flow; deposits, withdrawals, failed and missed sessions),
with their ``snapshot_totals`` and ``snapshot_nav`` rows as ``store`` writes them, then
times (median of --runs runs after a warm-up):

- one account's NAV series: ``SELECT snapshot_date, nav FROM nav_daily WHERE account = ?
  ORDER BY snapshot_date``
- the all-accounts NAV series: ``SELECT * FROM nav_daily_all`` (the recursion at query
  time, over portfolio_daily_all)
- ``report performance`` for every account and ALL over the whole history, and for one
  account over one year (the library call the command makes)
- what ``store`` adds to a snapshot of the newest session (the account's ledger_flows
  and snapshot_nav rows from that session on: one row), and to re-deriving an account's
  first session with a new value (its whole history: ``run --from-raw`` after
  normalization changed)

With ``--ledger``, every account also gets a Console ledger of its whole history (each
snapshot's pay-in a deposit and its payout a withdrawal, posted on its day), imported as
``import ledger`` stores it (``store_file``: the rows, then the account's ledger_flows
and NAVs), so that every snapshot but the first takes its cash flow from the ledger;
the import of one account's ten years is timed too.

Run: ``.venv/bin/python benchmarks/bench_nav.py --db sqlite`` (a temporary file) or
``--db postgres`` (a throwaway database on $SNAPSHOTTER_BENCH_PG); ``--url URL`` uses
that database instead and builds the data only when it has none. Not a test.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import pandas as pd
import sqlalchemy as sa
from bench_views import bench_database, generate, insert, sessions, statement
from sqlalchemy.orm import Session

from snapshotter.reports.performance import performance
from snapshotter.reports.query import Filters
from snapshotter.sessions import TradingCalendar
from snapshotter.store import engine as db
from snapshotter.store import imports, migrate
from snapshotter.store import writes as store

ACCOUNT = "BM0017"


def build(engine: sa.Engine, accounts: int, n_sessions: int) -> None:
    started = time.perf_counter()
    for batch in generate(accounts, 1, sessions(n_sessions), seed=3):
        with engine.begin() as conn:
            insert(conn, batch)
    if engine.dialect.name == "postgresql":
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.execute(sa.text("VACUUM ANALYZE"))
    print(f"built in {time.perf_counter() - started:.0f} s", file=sys.stderr)


def ledger_frame(conn: sa.Connection, account: str) -> pd.DataFrame:
    """The account's pay-ins and payouts as a parsed Console ledger (a deposit or a
    withdrawal on the snapshot's day)."""
    flows = conn.execute(sa.text(
        "SELECT snapshot_date, intraday_payin, payout FROM funds WHERE account = :a "
        "AND segment = 'equity' AND (intraday_payin > 0 OR payout > 0) "
        "ORDER BY snapshot_date"), {"a": account}).all()
    rows = []
    for day, payin, payout in flows:
        day = date.fromisoformat(day) if isinstance(day, str) else day
        if payin:
            rows.append((day, f"Funds added on {day}", "Bank Receipts", 0.0, payin, "deposit"))
        if payout:
            rows.append((day, f"Funds paid out on {day}", "Bank Payments", payout, 0.0,
                         "withdrawal"))
    frame = pd.DataFrame(rows, columns=["posting_date", "particulars", "voucher_type",
                                        "debit", "credit", "kind"])
    frame["cost_center"] = "NSE-EQ - Z"
    frame["amount"] = (frame["credit"] - frame["debit"]).round(6)
    frame["net_balance"] = frame["amount"].cumsum().round(6)
    frame["occurrence"] = 1
    frame["line"] = range(2, len(frame) + 2)
    return frame


def add_ledgers(engine: sa.Engine) -> float:
    """Every account's ledger, imported as `import ledger` stores it; the median
    seconds one account's import took."""
    with engine.connect() as conn:
        accounts = list(conn.execute(sa.text(
            "SELECT DISTINCT account FROM snapshots ORDER BY account")).scalars())
        frames = {a: ledger_frame(conn, a) for a in accounts}
    times = []
    for account, frame in frames.items():
        started = time.perf_counter()
        imports.store_file(engine, "ledger", account, f"{account}.csv", account, frame,
                           datetime.now(UTC))
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def median_ms(func: Callable[[], Any], runs: int) -> tuple[float, Any]:
    result = func()  # warm-up
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        func()
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1000, result


def _sql(engine: sa.Engine, sql: str, params: dict[str, Any]) -> Callable[[], int]:
    def run() -> int:
        with engine.connect() as conn:
            return len(conn.execute(statement(sql, params), params).fetchall())
    return run


def _refresh(engine: sa.Engine, which: str) -> Callable[[], int]:
    """store's ledger flow and NAV steps for ACCOUNT from its last (or first) session,
    rolled back."""
    def run() -> int:
        with Session(engine) as session, session.begin():
            day = session.execute(sa.text(
                f"SELECT {which}(snapshot_date) FROM snapshot_nav WHERE account = :a"),
                {"a": ACCOUNT}).scalar()
            start = date.fromisoformat(day) if isinstance(day, str) else day
            store._insert_flows(session, ACCOUNT, start)
            store._insert_nav(session, ACCOUNT, start)
            session.rollback()
        return 1
    return run


def measure(engine: sa.Engine, runs: int) -> dict[str, float]:
    global ACCOUNT
    with engine.connect() as conn:  # a smaller history (--accounts 2) has no BM0017
        ACCOUNT = conn.execute(sa.text(
            "SELECT COALESCE(MAX(account), :a) FROM snapshot_nav WHERE account <= :a"),
            {"a": ACCOUNT}).scalar()
    calendar = TradingCalendar()
    checks: dict[str, Callable[[], Any]] = {
        "one account's NAV series": _sql(
            engine, "SELECT snapshot_date, nav FROM nav_daily WHERE account = :account "
                    "ORDER BY snapshot_date", {"account": ACCOUNT}),
        "nav_daily_all (every session)": _sql(engine, "SELECT * FROM nav_daily_all", {}),
        "report performance, 50 accounts + ALL, 10 years": lambda: len(
            performance(engine, calendar).frame),
        "report performance, one account, one year": lambda: len(performance(
            engine, calendar, Filters((ACCOUNT,), date(2020, 1, 1), date(2020, 12, 31))).frame),
        "store: flows and NAV of the newest session": _refresh(engine, "MAX"),
        "store: flows and NAV of one account's 10 years": _refresh(engine, "MIN"),
    }
    out = {}
    for label, func in checks.items():
        ms, rows = median_ms(func, runs)
        out[label] = ms
        print(f"{label:48s} {ms:9.1f} ms  (median of {runs}; {rows} rows)")
    return out


def measure_sqlite(accounts: int = 50, n_sessions: int = 2500, runs: int = 5,
                   ledger: bool = False) -> dict[str, float]:
    """The figures on a temporary SQLite file (for bench_all.py)."""
    with tempfile.TemporaryDirectory() as tmp:
        url = f"sqlite:///{Path(tmp) / 'bench.db'}"
        engine = db.make_engine(url)
        try:
            migrate.upgrade(url, engine)
            build(engine, accounts, n_sessions)
            if ledger:
                add_ledgers(engine)
            return measure(engine, runs)
        finally:
            engine.dispose()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--db", choices=["sqlite", "postgres"], default="sqlite")
    parser.add_argument("--url", help="use this database (data built only when empty)")
    parser.add_argument("--accounts", type=int, default=50)
    parser.add_argument("--sessions", type=int, default=2500)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--ledger", action="store_true",
                        help="give every account a ledger of its whole history")
    args = parser.parse_args()

    with bench_database(args.db, args.url) as (engine, empty):
        if empty:
            print(f"building {args.accounts} accounts x {args.sessions} sessions into "
                  f"{engine.dialect.name} ...", file=sys.stderr)
            build(engine, args.accounts, args.sessions)
            if args.ledger:
                took = add_ledgers(engine)
                print(f"{'import ledger: one account, 10 years':48s} "
                      f"{took * 1000:9.1f} ms  (median of {args.accounts})")
        with engine.connect() as conn:
            n = conn.execute(sa.text("SELECT COUNT(*) FROM snapshot_nav")).scalar()
            flows = conn.execute(sa.text("SELECT COUNT(*) FROM ledger_flows")).scalar()
        print(f"{engine.dialect.name}: {n:,} snapshot_nav rows, {flows:,} ledger_flows rows")
        measure(engine, args.runs)
    return 0


if __name__ == "__main__":
    sys.exit(main())
