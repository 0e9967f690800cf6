"""Console imports at scale: a synthetic tradebook of N fills (default 1,000,000, about
105 MB) imported with the real `snapshotter import tradebook`, then what the FIFO lots
cost afterwards: a daily `run` (against the simulator) over the same run without the
trades, and a small second import touching one instrument.

Issue 16 measured, before this work: a 1,000,000-row tradebook held the run lock 294 s
at 3.0 GB, and every later `run` spent 216 s and 1.9 GB rebuilding lots.

Run: `.venv/bin/python benchmarks/bench_lots.py --rows 1000000` (`make bench` runs a
smaller one in bench_all.py).
"""

from __future__ import annotations

import argparse
import random
import subprocess
import tempfile
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path

from bench_fetch import env, run_measured, snapshotter, write_config

from snapshotter.simulator import KiteSimulator, demo_accounts

HEADER = ("symbol,isin,trade_date,exchange,segment,series,trade_type,auction,quantity,"
          "price,trade_id,order_id,order_execution_time")
INSTRUMENTS = 400
FIRST_DAY = date(2015, 1, 1)


@dataclass
class LotsResult:
    rows: int
    file_mb: float
    import_wall: float
    import_rss_mb: float
    run_without_trades: float
    run_with_trades: float
    run_rss_mb: float
    small_import_wall: float
    stderr: str = ""

    @property
    def rows_per_second(self) -> float:
        return self.rows / self.import_wall

    @property
    def run_added(self) -> float:
        return self.run_with_trades - self.run_without_trades


def write_tradebook(path: Path, rows: int, *, seed: int = 16, first_id: int = 1,
                    instruments: int = INSTRUMENTS, first_day: date = FIRST_DAY) -> Path:
    """``rows`` fills over ``instruments`` instruments and about 10 years of weekdays,
    in date order: buys, and sales of at most what is held (some intraday)."""
    rng = random.Random(seed)
    held = [0] * instruments
    days = [first_day + timedelta(days=d) for d in range(3650)
            if (first_day + timedelta(days=d)).weekday() < 5]
    per_day = max(1, rows // len(days) + 1)
    with path.open("w", encoding="utf-8") as out:
        out.write(HEADER + "\n")
        written = 0
        for day in days:
            for _ in range(per_day):
                if written == rows:
                    return path
                which = rng.randrange(instruments)
                sell = held[which] > 0 and rng.random() < 0.45
                quantity = rng.randint(1, held[which]) if sell else rng.randint(1, 50)
                held[which] += -quantity if sell else quantity
                trade = first_id + written
                second = 33300 + written % 22000
                out.write(f"SYM{which:04d},INE{which:05d}A0101,{day},NSE,EQ,EQ,"
                          f"{'sell' if sell else 'buy'},false,{quantity},"
                          f"{100 + which + rng.random() * 10:.2f},{trade},{trade + 10**15},"
                          f"{day}T{second // 3600:02d}:{second // 60 % 60:02d}:"
                          f"{second % 60:02d}\n")
                written += 1
    return path


def measure(rows: int) -> LotsResult:
    sim_accounts = demo_accounts(1)
    account = sim_accounts[0].user_id
    with tempfile.TemporaryDirectory() as tmp, KiteSimulator(sim_accounts) as sim:
        config = str(write_config(Path(tmp) / "config.yaml", tmp, sim.base_url,
                                  sim_accounts, 10))
        subprocess.run(snapshotter("--config", config, "db", "upgrade"), check=True,
                       capture_output=True, env=env())
        before, _, result = run_measured(snapshotter("--config", config, "run", "--force"))
        _check(result, "run")
        book = write_tradebook(Path(tmp) / "tradebook.csv", rows)
        wall, rss, result = run_measured(snapshotter(
            "--config", config, "import", "tradebook", str(book), "--account", account))
        _check(result, "import tradebook")
        after, run_rss, result = run_measured(snapshotter("--config", config, "run",
                                                           "--force"))
        _check(result, "run")
        # One more day of one instrument, as a weekly export would add.
        more = Path(tmp) / "more.csv"
        more.write_text(f"{HEADER}\nSYM0007,INE00007A0101,2025-06-02,NSE,EQ,EQ,buy,false,5,"
                        f"107.5,{rows + 10},{rows + 10 + 10**15},2025-06-02T10:00:00\n")
        small, _, result = run_measured(snapshotter(
            "--config", config, "import", "tradebook", str(more), "--account", account))
        _check(result, "import tradebook (one row)")
        return LotsResult(rows, book.stat().st_size / 1e6, wall, rss, before, after,
                          run_rss, small, result.stderr)


def _check(result: subprocess.CompletedProcess[str], what: str) -> None:
    if result.returncode != 0:
        raise SystemExit(f"{what} failed ({result.returncode}):\n{result.stderr}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--write", metavar="FILE.csv",
                        help="only write the tradebook to FILE.csv (for profiling)")
    args = parser.parse_args()
    if args.write:
        write_tradebook(Path(args.write), args.rows)
        return 0
    r = measure(args.rows)
    print(f"tradebook of {r.rows} fills ({r.file_mb:.0f} MB): import {r.import_wall:.1f} s "
          f"({r.rows_per_second:.0f} rows/s), peak RSS {r.import_rss_mb:.0f} MB")
    print(f"run --force: {r.run_with_trades:.2f} s with the trades, "
          f"{r.run_without_trades:.2f} s without: +{r.run_added:.2f} s for the lots, "
          f"peak RSS {r.run_rss_mb:.0f} MB")
    print(f"a one-row import afterwards: {r.small_import_wall:.2f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
