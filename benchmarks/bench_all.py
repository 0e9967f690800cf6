"""The benchmark table of issue 9: each measure, its target and what this machine does
now. Run: `make bench` (or `.venv/bin/python benchmarks/bench_all.py`); takes a few
minutes. Timings are of the real `snapshotter` command (start-up included) against the
simulator, which runs in this process: on a busy machine compare ratios within one run.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from dataclasses import dataclass

import bench_fetch
import bench_lots
import bench_nav
import bench_run
import bench_serve
import bench_startup

FETCH = "benchmarks/bench_fetch.py"
NAV = "benchmarks/bench_nav.py --db sqlite"
LOT_ROWS = 200_000
LOTS = f"benchmarks/bench_lots.py --rows {LOT_ROWS}"
SERVE = "benchmarks/bench_serve.py --db sqlite"
RUN = "benchmarks/bench_run.py"


@dataclass
class Row:
    measure: str
    issue: str  # the figure in the issue, before this work
    target: str
    measured: float
    unit: str
    within: Callable[[float], bool]
    command: str

    def line(self, widths: tuple[int, ...]) -> str:
        cells = (self.measure, self.issue, f"{self.measured:.{_digits(self.unit)}f} "
                 f"{self.unit}".strip(), self.target,
                 "yes" if self.within(self.measured) else "NO")
        return "| " + " | ".join(c.ljust(w) for c, w in zip(cells, widths, strict=True)) + " |"


def _digits(unit: str) -> int:
    return {"s": 2, "ms": 0, "MB": 0, "rows/s": 0}.get(unit, 1)


def _fetch(accounts: int, latency: float, concurrency: int) -> bench_fetch.FetchResult:
    print(f"  {FETCH} --accounts {accounts} --latency {latency} --concurrency {concurrency}",
          file=sys.stderr, flush=True)
    result = bench_fetch.measure(accounts, latency, concurrency)
    if result.exit_code != 0:
        raise SystemExit(f"snapshotter run failed ({result.exit_code}):\n{result.stderr}")
    return result


def rows(runs: int) -> list[Row]:
    small = _fetch(20, 0.0, 10)
    large = _fetch(200, 0.0, 10)
    slow = _fetch(20, 0.2, 10)
    wide = _fetch(200, 0.2, 50)
    deep = _fetch(200, 0.2, 10)
    print("  benchmarks/bench_startup.py", file=sys.stderr, flush=True)
    startup = bench_startup.measure(runs)
    print(f"  {NAV}", file=sys.stderr, flush=True)
    nav = bench_nav.measure_sqlite(runs=runs)
    print(f"  {LOTS}", file=sys.stderr, flush=True)
    lots = bench_lots.measure(LOT_ROWS)
    print(f"  {SERVE}", file=sys.stderr, flush=True)
    served = bench_serve.measure_sqlite(runs=runs)
    print(f"  {RUN} (median of 3 of each case)", file=sys.stderr, flush=True)
    daily = bench_run.summarize(bench_run.run_cases(3, {"now": bench_run.ROOT})["now"])
    cases = bench_run.CASES
    per_account_ms = (large.wall - small.wall) / (large.accounts - small.accounts) * 1000
    return [
        Row("200 accounts, 0 ms latency: extra wall per account over 20 accounts",
            "~240 ms", "<= 10 ms", per_account_ms, "ms", lambda v: v <= 10,
            f"{FETCH} --latency 0 --accounts 200, minus --accounts 20, / 180"),
        Row("20 accounts, 200 ms latency, wall incl. start-up", "5.2-6.2 s", "<= 2.0 s",
            slow.wall, "s", lambda v: v <= 2.0, f"{FETCH} --accounts 20 --latency 0.2"),
        Row("200 accounts, 200 ms latency, `kite.concurrency: 50`", "-", "<= 4 s",
            wide.wall, "s", lambda v: v <= 4.0,
            f"{FETCH} --accounts 200 --latency 0.2 --concurrency 50"),
        Row("`snapshotter --help` over `python -c pass`", "~1.0 s", "<= 0.25 s",
            startup.help_over_python, "s", lambda v: v <= 0.25,
            "benchmarks/bench_startup.py (median of 5)"),
        Row("`snapshotter status` with 3 accounts", "2.5-3 s", "<= 0.6 s", startup.status,
            "s", lambda v: v <= 0.6, "benchmarks/bench_startup.py (median of 5)"),
        Row("peak RSS, 200 accounts", "-", "<= 300 MB",
            max(large.peak_rss_mb, wide.peak_rss_mb, deep.peak_rss_mb), "MB",
            lambda v: v <= 300, f"{FETCH} --accounts 200 (the run's own peak RSS)"),
        Row("200 accounts, 200 ms, concurrency 10: mean requests in flight", "peak 4",
            ">= 10", deep.mean_in_flight, "", lambda v: v >= 10,
            f"{FETCH} --accounts 200 --latency 0.2 --concurrency 10"),
        Row("200 accounts, 200 ms, concurrency 50: mean requests in flight", "-",
            ">= 50", wide.mean_in_flight, "", lambda v: v >= 50,
            f"{FETCH} --accounts 200 --latency 0.2 --concurrency 50"),
        Row("one account's `nav_daily` series, 50 accounts x 2,500 sessions (SQLite)", "-",
            "<= 50 ms", nav["one account's NAV series"], "ms", lambda v: v <= 50,
            f"{NAV} (median of 5)"),
        Row("`report performance`, 50 accounts + ALL over 10 years (SQLite)", "-",
            "<= 3 s", nav["report performance, 50 accounts + ALL, 10 years"] / 1000, "s",
            lambda v: v <= 3.0, f"{NAV} (median of 5)"),
        Row("extra CPU of `snapshotter run` per account, 20 -> 200 accounts at 0 ms "
            f"(the simulator's: {daily.sim_cpu_per_account_ms:.1f} ms)", "~58 ms", "<= 10 ms",
            daily.cpu_per_account_ms, "ms", lambda v: v <= 10,
            f"{RUN}: CPU of {cases['cpu200'].command}, minus {cases['cpu20'].command}, "
            "/ 180 (getrusage of the child; the simulator's: of this process)"),
        Row("20 accounts, 200 ms, all at once, fresh database, wall", "3.7 s", "<= 1.6 s",
            daily.fresh20, "s", lambda v: v <= 1.6, f"{RUN}: {cases['fresh20'].command}"),
        Row("20 accounts, 200 ms, all at once, database at head, wall", "-", "<= 1.3 s",
            daily.head20, "s", lambda v: v <= 1.3, f"{RUN}: {cases['head20'].command}"),
        Row("200 accounts, 200 ms, `kite.concurrency: 50`, database at head, wall", "-",
            "<= 3 s", daily.wide200, "s", lambda v: v <= 3.0,
            f"{RUN}: {cases['wide200'].command}"),
        Row(f"`import tradebook` of {LOT_ROWS:,} fills, lots included (SQLite)",
            "3,400 rows/s (1M: 294 s)", ">= 5,000 rows/s", lots.rows_per_second, "rows/s",
            lambda v: v >= 5000, LOTS),
        Row("`run` after that import: added over the run without trades (SQLite)",
            "216 s (1M fills)", "< 2 s", lots.run_added, "s", lambda v: v < 2.0, LOTS),
        Row("a one-fill `import tradebook` afterwards, wall incl. start-up (SQLite)", "-",
            "<= 3 s", lots.small_import_wall, "s", lambda v: v <= 3.0, LOTS),
        Row("dashboard: slowest page's server time, 50 accounts x 10 years (SQLite)", "-",
            "< 300 ms", served.slowest_ms, "ms", lambda v: v < 300,
            f"{SERVE} (median of {runs} per page, after the background warm-up)"),
        Row("dashboard: the overview's first contentful paint in Chromium (SQLite)", "-",
            "< 1.5 s", served.first_paint_ms / 1000, "s", lambda v: v < 1.5,
            f"{SERVE} (median of {runs}, nothing cached)"),
    ]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5, help="runs of each start-up timing")
    args = parser.parse_args()
    bench_fetch.installed_bytecode()
    print("measuring (python " + sys.version.split()[0] + "):", file=sys.stderr)
    table = rows(args.runs)
    header = ("measure", "issue (before)", "measured", "target", "met")
    cells = [(r.measure, r.issue, f"{r.measured:.{_digits(r.unit)}f} {r.unit}".strip(),
              r.target, "yes") for r in table]
    widths = tuple(max(len(c[i]) for c in [header, *cells]) for i in range(len(header)))
    print("| " + " | ".join(h.ljust(w) for h, w in zip(header, widths, strict=True)) + " |")
    print("|" + "|".join("-" * (w + 2) for w in widths) + "|")
    for row in table:
        print(row.line(widths))
    print()
    for number, row in enumerate(table, 1):
        print(f"{number}. {row.measure}: {row.command}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
