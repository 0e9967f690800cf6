"""Query times of the SQL views over 10 years of synthetic history.

Builds (after running the migrations) 3 accounts x 200 holdings x ~2500 NSE sessions
(1.5 M holding rows, with T+1 buys, sales with their day positions, splits, deposits,
withdrawals, MF holdings, failed and missed sessions; and their ``snapshot_totals`` rows,
by the INSERT ... SELECT that ``store`` runs), then times the typical queries (median of
--runs runs after a warm-up):

- a portfolio value series: ``SELECT snapshot_date, total_value FROM portfolio_daily
  WHERE account = ? ORDER BY snapshot_date``
- one symbol's history: ``SELECT * FROM holding_daily WHERE account = ? AND
  tradingsymbol = ? ORDER BY snapshot_date``
- a month of P&L: ``SELECT * FROM pnl_daily WHERE account = ? AND snapshot_date
  BETWEEN ? AND ?``

Run: ``.venv/bin/python benchmarks/bench_views.py --db sqlite`` (a temporary file) or
``--db postgres`` (a throwaway database on $SNAPSHOTTER_BENCH_PG, default
postgresql+psycopg://postgres@127.0.0.1:5432/postgres). ``--url URL`` uses that database
instead and builds the data only when it has none (so a second run only times the
queries); ``--explain`` prints the query plans. Not a test.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, date, datetime, timedelta
from datetime import time as dtime
from pathlib import Path
from typing import Any

import numpy as np
import sqlalchemy as sa

from snapshotter.store import engine as db
from snapshotter.store import migrate, views
from snapshotter.store.models import Snapshot, funds, holdings, mf_holdings, positions

PG_ADMIN_URL = os.environ.get(
    "SNAPSHOTTER_BENCH_PG", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres")

HOLDING_COLS = ["snapshot_id", "account", "snapshot_date", "tradingsymbol", "exchange",
                "instrument_token", "isin", "product", "quantity", "t1_quantity",
                "realised_quantity", "opening_quantity", "average_price", "last_price",
                "close_price", "pnl", "day_change", "day_change_percentage"]
POSITION_COLS = ["snapshot_id", "account", "snapshot_date", "position_type", "tradingsymbol",
                 "exchange", "product", "quantity", "multiplier", "average_price",
                 "close_price", "last_price", "pnl", "m2m", "buy_quantity", "buy_price",
                 "sell_quantity", "sell_price", "day_sell_quantity", "day_sell_price"]
FUNDS_COLS = ["snapshot_id", "account", "snapshot_date", "segment", "enabled", "net", "cash",
              "opening_balance", "live_balance", "intraday_payin", "payout"]
MF_COLS = ["snapshot_id", "account", "snapshot_date", "folio", "fund", "tradingsymbol",
           "average_price", "last_price", "quantity", "pnl"]


def sessions(count: int, start: date = date(2016, 1, 4)) -> list[date]:
    """Weekdays from ``start`` (NSE holidays do not matter here)."""
    out: list[date] = []
    day = start
    while len(out) < count:
        if day.weekday() < 5:
            out.append(day)
        day += timedelta(days=1)
    return out


class Batch:
    """Rows per table, flushed to the database every ``size`` holding rows."""

    def __init__(self) -> None:
        self.rows: dict[str, list[tuple[Any, ...]]] = {
            "snapshots": [], "holdings": [], "positions": [], "funds": [], "mf_holdings": []}

    def __len__(self) -> int:
        return len(self.rows["holdings"])


def generate(accounts: int, n_holdings: int, days: list[date], seed: int = 1,
             batch_rows: int = 100_000, first_snapshot_id: int = 1) -> Iterator[Batch]:
    """Synthetic snapshots, account by account, as batches of plain row tuples."""
    rng = np.random.default_rng(seed)
    snapshot_id = first_snapshot_id - 1
    batch = Batch()
    for a in range(accounts):
        account = f"BM{a + 1:04d}"
        symbols = [f"SYM{i:03d}" for i in range(n_holdings)]
        exchanges = ["BSE" if i % 10 == 9 else "NSE" for i in range(n_holdings)]
        price = np.round(rng.uniform(20, 4000, n_holdings), 2)
        close = price.copy()
        qty = rng.integers(1, 500, n_holdings).astype(np.int64)
        t1 = np.zeros(n_holdings, dtype=np.int64)
        avg = np.round(price * rng.uniform(0.7, 1.3, n_holdings), 4)
        nav = rng.uniform(10, 500, 5)
        units = np.round(rng.uniform(10, 2000, 5), 3)
        mf_avg = np.round(nav * rng.uniform(0.7, 1.1, 5), 4)
        cash = float(rng.uniform(1e5, 1e6))
        for day in days:
            roll = rng.random()
            if roll < 0.005:  # a session nobody snapshotted: no ledger row at all
                continue
            snapshot_id += 1
            taken = datetime.combine(day, dtime(11, 0), tzinfo=UTC)
            if roll < 0.01:  # a failed attempt: a gap in the data too
                batch.rows["snapshots"].append((snapshot_id, account, day, taken, "failed",
                                                False, "ReadTimeout", 0, 0, 0, 0, "kite"))
                continue
            # The market moved since the last snapshot; T+1 buys have been delivered.
            close = price
            price = np.round(price * np.exp(rng.normal(0.0003, 0.015, n_holdings)), 2)
            qty = qty + t1
            t1 = np.zeros(n_holdings, dtype=np.int64)
            pos: list[tuple[Any, ...]] = []
            # Splits (rare): quantity x2, average and prices / 2.
            split = rng.random(n_holdings) < 0.0002
            qty[split] *= 2
            avg[split] = np.round(avg[split] / 2, 4)
            price[split] = np.round(price[split] / 2, 2)
            close[split] = np.round(close[split] / 2, 2)
            # Buys (T+1 today) and sales (with their day and net positions).
            buys = rng.random(n_holdings) < 0.02
            for i in np.flatnonzero(buys):
                k = int(rng.integers(1, 50))
                avg[i] = round((avg[i] * qty[i] + k * price[i]) / (qty[i] + k), 4)
                t1[i] = k
            sells = (rng.random(n_holdings) < 0.01) & ~buys & (qty > 1)
            for i in np.flatnonzero(sells):
                k = max(1, int(qty[i] * rng.uniform(0.1, 0.5)))
                qty[i] -= k
                p = float(price[i])
                for ptype in ("day", "net"):
                    pos.append((snapshot_id, account, day, ptype, symbols[i], exchanges[i],
                                "CNC", -k, 1.0, 0.0, float(close[i]), p,
                                round(k * (p - float(avg[i])), 6), 0.0, 0, 0.0, k, p, k, p))
                cash += k * p
            if rng.random() < 0.1:  # an intraday (MIS) trade, squared off
                i = int(rng.integers(n_holdings))
                m2m = round(float(rng.normal(0, 500)), 2)
                for ptype in ("day", "net"):
                    pos.append((snapshot_id, account, day, ptype, symbols[i], exchanges[i],
                                "MIS", 0, 1.0, 0.0, float(close[i]), float(price[i]), m2m,
                                m2m, 10, float(price[i]), 10, float(price[i]), 10,
                                float(price[i])))
            payin = round(float(rng.uniform(1e4, 1e5)), 2) if rng.random() < 0.02 else 0.0
            payout = round(float(rng.uniform(1e4, 5e4)), 2) if rng.random() < 0.01 else 0.0
            cash += payin
            batch.rows["funds"] += [
                (snapshot_id, account, day, "commodity", True, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0),
                (snapshot_id, account, day, "equity", True, round(cash - payout, 2),
                 round(cash, 2), round(cash - payin, 2), round(cash - payout, 2), payin,
                 payout)]
            cash -= payout
            nav = nav * np.exp(rng.normal(0.0003, 0.008, 5))
            for j in range(5):
                batch.rows["mf_holdings"].append(
                    (snapshot_id, account, day, f"F{a}{j}", f"Fund {j}", f"INF{a}{j:08d}",
                     float(mf_avg[j]), round(float(nav[j]), 4), float(units[j]),
                     round(float(units[j] * (nav[j] - mf_avg[j])), 6)))
            for i in range(n_holdings):
                p, c = float(price[i]), float(close[i])
                batch.rows["holdings"].append(
                    (snapshot_id, account, day, symbols[i], exchanges[i], 100000 + i,
                     f"INE{i:09d}", "CNC", int(qty[i]), int(t1[i]), int(qty[i]),
                     int(qty[i]), float(avg[i]), p, c,
                     round((p - float(avg[i])) * int(qty[i]), 6), round(p - c, 6),
                     round((p - c) / c * 100, 6)))
            batch.rows["positions"] += pos
            batch.rows["snapshots"].append((snapshot_id, account, day, taken, "ok", True, None,
                                            n_holdings, len(pos), 2, 5, "kite"))
            if len(batch) >= batch_rows:
                yield batch
                batch = Batch()
    yield batch


SNAPSHOT_COLS = ["id", "account", "snapshot_date", "taken_at", "status", "final", "error",
                 "holdings_count", "positions_count", "funds_count", "mf_holdings_count", "source"]
TABLES: dict[str, tuple[sa.Table, list[str]]] = {
    "snapshots": (Snapshot.__table__, SNAPSHOT_COLS),  # type: ignore[dict-item]
    "holdings": (holdings, HOLDING_COLS),
    "positions": (positions, POSITION_COLS),
    "funds": (funds, FUNDS_COLS),
    "mf_holdings": (mf_holdings, MF_COLS),
}


def insert(conn: sa.Connection, batch: Batch, *, totals: bool = True,
           nav: bool | None = None) -> None:
    """SQLite: Core executemany. PostgreSQL: COPY through psycopg (same transaction).
    Then (``totals``; False for a database older than migration 0003) the batch's
    ``snapshot_totals`` rows, as ``store`` fills them: the same INSERT ... SELECT, over
    the batch's snapshot ids (a batch holds whole snapshots); and (``nav``, by default
    as ``totals``; False before migration 0008) each account's ``snapshot_nav`` rows from
    its first session in the batch on, as ``store`` does (batches come in date order)."""
    nav = totals if nav is None else nav
    for name, rows in batch.rows.items():
        if not rows:
            continue
        table, cols = TABLES[name]
        if conn.dialect.name == "postgresql":
            raw = conn.connection.driver_connection
            assert raw is not None
            with raw.cursor() as cur, cur.copy(
                    f"COPY {name} ({', '.join(cols)}) FROM STDIN") as copy:
                for row in rows:
                    copy.write_row(row)
        else:
            conn.execute(sa.insert(table),
                         [dict(zip(cols, row, strict=True)) for row in rows])
    ids = [row[0] for row in batch.rows["snapshots"]]
    if totals and ids:
        conn.execute(sa.text(views.SNAPSHOT_TOTALS), {"first_id": min(ids), "last_id": max(ids)})
    if nav and ids:
        starts: dict[str, date] = {}
        for row in batch.rows["snapshots"]:
            starts[row[1]] = min(starts.get(row[1], row[2]), row[2])
        for account, start in starts.items():
            conn.execute(sa.text("DELETE FROM snapshot_nav WHERE account = :account "
                                 "AND snapshot_date >= :start"),
                         {"account": account, "start": start})
            conn.execute(sa.text(views.SNAPSHOT_NAV), {"account": account, "start": start})


def build(engine: sa.Engine, accounts: int, n_holdings: int, n_sessions: int) -> None:
    started = time.perf_counter()
    total = 0
    for batch in generate(accounts, n_holdings, sessions(n_sessions)):
        with engine.begin() as conn:
            insert(conn, batch)
        total += len(batch)
        print(f"\r  {total:,} holding rows", end="", file=sys.stderr, flush=True)
    print(file=sys.stderr)
    if engine.dialect.name == "postgresql":
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.execute(sa.text(
                "SELECT setval(pg_get_serial_sequence('snapshots', 'id'), "
                "(SELECT MAX(id) FROM snapshots))"))
            conn.execute(sa.text("VACUUM ANALYZE"))
    print(f"built {total:,} holding rows in {time.perf_counter() - started:.0f} s",
          file=sys.stderr)


QUERIES: dict[str, tuple[str, dict[str, Any]]] = {
    "portfolio value series": (
        "SELECT snapshot_date, total_value FROM portfolio_daily WHERE account = :account "
        "ORDER BY snapshot_date", {"account": "BM0002"}),
    "one symbol's history": (
        "SELECT * FROM holding_daily WHERE account = :account AND tradingsymbol = :symbol "
        "ORDER BY snapshot_date", {"account": "BM0002", "symbol": "SYM123"}),
    "a month of P&L": (
        "SELECT * FROM pnl_daily WHERE account = :account "
        "AND snapshot_date BETWEEN :start AND :end",
        {"account": "BM0002", "start": date(2021, 3, 1), "end": date(2021, 3, 31)}),
}


def statement(sql: str, params: dict[str, Any]) -> sa.TextClause:
    return sa.text(sql).bindparams(*(
        sa.bindparam(k, type_=sa.Date() if isinstance(v, date) else sa.Text())
        for k, v in params.items()))


def time_queries(engine: sa.Engine, runs: int, explain: bool) -> dict[str, float]:
    medians = {}
    with engine.connect() as conn:
        for label, (sql, params) in QUERIES.items():
            stmt = statement(sql, params)
            rows = conn.execute(stmt, params).fetchall()  # warm-up
            times = []
            for _ in range(runs):
                start = time.perf_counter()
                conn.execute(stmt, params).fetchall()
                times.append(time.perf_counter() - start)
            medians[label] = statistics.median(times) * 1000
            print(f"{label:24s} {medians[label]:8.1f} ms  (median of {runs}; min "
                  f"{min(times) * 1000:.1f}, max {max(times) * 1000:.1f}; {len(rows)} rows)")
            if explain:
                prefix = ("EXPLAIN ANALYZE " if engine.dialect.name == "postgresql"
                          else "EXPLAIN QUERY PLAN ")
                for line in conn.execute(statement(prefix + sql, params), params):
                    print("    ", line[-1])
    return medians


@contextmanager
def bench_database(kind: str, url: str | None) -> Iterator[tuple[sa.Engine, bool]]:
    """The database to measure, migrated: ``url``, else a new SQLite file (``kind``
    sqlite) or a throwaway PostgreSQL database, dropped afterwards; and whether it holds
    no snapshot yet (the data to build)."""
    with tempfile.TemporaryDirectory() as tmp:
        throwaway = None
        admin = sa.create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
        if url is None and kind == "sqlite":
            url = f"sqlite:///{Path(tmp) / 'bench.db'}"
        elif url is None:
            throwaway = f"snapshotter_bench_{uuid.uuid4().hex[:8]}"
            with admin.connect() as conn:
                conn.execute(sa.text(f'CREATE DATABASE "{throwaway}"'))
            url = PG_ADMIN_URL.rsplit("/", 1)[0] + "/" + throwaway
        engine = db.make_engine(url)
        try:
            migrate.upgrade(url, engine)
            with engine.connect() as conn:
                empty = conn.execute(sa.text("SELECT COUNT(*) FROM snapshots")).scalar() == 0
            yield engine, empty
        finally:
            engine.dispose()
            if throwaway:
                with admin.connect() as conn:
                    conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{throwaway}" WITH (FORCE)'))
            admin.dispose()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--db", choices=["sqlite", "postgres"], default="sqlite")
    parser.add_argument("--url", help="use this database (data built only when empty)")
    parser.add_argument("--accounts", type=int, default=3)
    parser.add_argument("--holdings", type=int, default=200)
    parser.add_argument("--sessions", type=int, default=2500)
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--explain", action="store_true", help="print the query plans")
    args = parser.parse_args()

    with bench_database(args.db, args.url) as (engine, empty):
        if empty:
            print(f"building {args.accounts} accounts x {args.holdings} holdings x "
                  f"{args.sessions} sessions into {engine.dialect.name} ...",
                  file=sys.stderr)
            build(engine, args.accounts, args.holdings, args.sessions)
        with engine.connect() as conn:
            n = conn.execute(sa.text("SELECT COUNT(*) FROM holdings")).scalar()
        print(f"{engine.dialect.name}: {n:,} holding rows")
        time_queries(engine, args.runs, args.explain)
    return 0


if __name__ == "__main__":
    sys.exit(main())
