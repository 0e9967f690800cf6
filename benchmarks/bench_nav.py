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
- what ``store`` adds to a snapshot of the newest session (the account's snapshot_nav
  rows from that session on: one row), and to re-deriving an account's first session
  with a new value (its whole history: ``run --from-raw`` after normalization changed)

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
from datetime import date
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from bench_views import bench_database, generate, insert, sessions, statement
from sqlalchemy.orm import Session

from snapshotter.reports.performance import performance
from snapshotter.reports.tables import Filters
from snapshotter.sessions import TradingCalendar
from snapshotter.store import engine as db
from snapshotter.store import migrate
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
    """store's NAV step for ACCOUNT from its last (or first) session, rolled back."""
    def run() -> int:
        with Session(engine) as session, session.begin():
            day = session.execute(sa.text(
                f"SELECT {which}(snapshot_date) FROM snapshot_nav WHERE account = :a"),
                {"a": ACCOUNT}).scalar()
            start = date.fromisoformat(day) if isinstance(day, str) else day
            store._insert_nav(session, ACCOUNT, start)
            session.rollback()
        return 1
    return run


def measure(engine: sa.Engine, runs: int) -> dict[str, float]:
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
        "store: NAV of the newest session": _refresh(engine, "MAX"),
        "store: NAV of one account's 10 years": _refresh(engine, "MIN"),
    }
    out = {}
    for label, func in checks.items():
        ms, rows = median_ms(func, runs)
        out[label] = ms
        print(f"{label:48s} {ms:9.1f} ms  (median of {runs}; {rows} rows)")
    return out


def measure_sqlite(accounts: int = 50, n_sessions: int = 2500, runs: int = 5,
                   ) -> dict[str, float]:
    """The figures on a temporary SQLite file (for bench_all.py)."""
    with tempfile.TemporaryDirectory() as tmp:
        url = f"sqlite:///{Path(tmp) / 'bench.db'}"
        engine = db.make_engine(url)
        try:
            migrate.upgrade(url, engine)
            build(engine, accounts, n_sessions)
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
    args = parser.parse_args()

    with bench_database(args.db, args.url) as (engine, empty):
        if empty:
            print(f"building {args.accounts} accounts x {args.sessions} sessions into "
                  f"{engine.dialect.name} ...", file=sys.stderr)
            build(engine, args.accounts, args.sessions)
        with engine.connect() as conn:
            n = conn.execute(sa.text("SELECT COUNT(*) FROM snapshot_nav")).scalar()
        print(f"{engine.dialect.name}: {n:,} snapshot_nav rows")
        measure(engine, args.runs)
    return 0


if __name__ == "__main__":
    sys.exit(main())
