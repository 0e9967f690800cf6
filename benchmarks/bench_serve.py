"""The dashboard's speed over 10 years of 50 accounts: each page's server time and the
overview's first paint in Chromium.

Builds (or, with ``--url``, reuses) bench_nav's history (50 accounts x ~2,500 NSE
sessions) and a benchmark index's closes, starts a real ``snapshotter serve --port 0``
on it, waits until the pages' figures are computed (the time that takes is printed:
the background warm-up after a start), then measures:

- each page's server time: the ``Server-Timing: app;dur=`` header (the app's time, from
  the request reaching it to its answer), median of ``--runs`` requests
- the overview's first contentful paint in Debian chromium (Playwright; a new browser
  context each time, so nothing cached), median of ``--runs``

Targets: 300 ms per page, 1.5 s first paint. Run: ``.venv/bin/python
benchmarks/bench_serve.py --db sqlite`` (or ``--db postgres``, a throwaway database on
$SNAPSHOTTER_BENCH_PG; ``--url URL`` to reuse one). Not a test.
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path

import numpy as np
import requests
import sqlalchemy as sa
import yaml
from bench_nav import build
from bench_views import bench_database

CHROMIUM = os.environ.get("SNAPSHOTTER_TEST_CHROMIUM", "/usr/bin/chromium")
PAGE_TARGET_MS = 300.0
PAINT_TARGET_S = 1.5
TIMING = re.compile(r"app;dur=([0-9.]+)")
COMPUTING = 'id="computing"'
#: the pages measured: the overview's windows, an account's page, an account's 1M page
PAGES = ["/", "/?window=1M", "/?window=3M", "/?window=6M", "/?window=3Y", "/?window=all",
         "/?window=FY", "/account/BM0017", "/account/BM0017?window=all"]
BENCHMARK = "NIFTY50"
#: an account page no warm-up computes: its first visit computes it in the request
FIRST_VISIT = "/account/BM0042?window=3Y"


@dataclass
class ServeResult:
    warm_s: float  # start until every page measured had its figures
    pages_ms: dict[str, float] = field(default_factory=dict)
    first_paint_ms: float = float("nan")

    @property
    def slowest_ms(self) -> float:
        return max(self.pages_ms.values())


def add_benchmark(engine: sa.Engine) -> None:
    """Closes of an index on every session of the history (a random walk)."""
    with engine.begin() as conn:
        if conn.execute(sa.text("SELECT COUNT(*) FROM benchmark_daily")).scalar():
            return
        days = [d if isinstance(d, date) else date.fromisoformat(str(d)) for d in
                conn.execute(sa.text("SELECT DISTINCT snapshot_date FROM snapshots "
                                     "ORDER BY snapshot_date")).scalars()]
        steps = np.random.default_rng(5).normal(0.0004, 0.01, len(days))
        closes = 10_000 * np.exp(np.cumsum(steps))
        conn.execute(sa.text("INSERT INTO benchmark_daily (name, date, close) "
                             "VALUES (:name, :date, :close)"),
                     [{"name": BENCHMARK, "date": d, "close": float(c)}
                      for d, c in zip(days, closes, strict=True)])


def _config(directory: Path, url: str, accounts: list[str]) -> Path:
    path = directory / "config.yaml"
    path.write_text(yaml.safe_dump({
        "database": {"url": url},
        # serve needs no secret; until the read commands load the config without them,
        # fake ones
        "accounts": [{"user_id": a, "password": "bench", "totp_secret": "JBSWY3DPEHPK3PXPJBSWY3DP"}
                     for a in accounts]}), encoding="utf-8")
    path.chmod(0o600)
    return path


@contextmanager
def serving(config: Path) -> Iterator[str]:
    process = subprocess.Popen(
        [sys.executable, "-m", "snapshotter", "--config", str(config), "serve", "--port", "0"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, stdin=subprocess.DEVNULL)
    found: list[str] = []
    started = threading.Event()

    def read() -> None:
        assert process.stdout is not None
        for line in process.stdout:
            if line.startswith("dashboard on "):
                found.append(line.split()[2].rstrip("/"))
                started.set()
            elif " ERROR " in line or line.startswith("error"):
                print(line, end="", file=sys.stderr)
        started.set()

    threading.Thread(target=read, daemon=True).start()
    try:
        started.wait()
        if not found:
            raise SystemExit("serve did not start")
        yield found[0]
    finally:
        process.terminate()
        process.wait()


def _session() -> requests.Session:
    session = requests.Session()
    session.trust_env = False  # the dashboard is on 127.0.0.1, whatever proxy there is
    return session


def _wait_computed(session: requests.Session, url: str) -> None:
    while True:
        answer = session.get(url, timeout=600)
        answer.raise_for_status()
        if COMPUTING not in answer.text:
            return
        time.sleep(0.5)


def server_ms(session: requests.Session, url: str, runs: int) -> float:
    times = []
    for _ in range(runs):
        answer = session.get(url, timeout=600)
        answer.raise_for_status()
        found = TIMING.search(answer.headers.get("Server-Timing", ""))
        assert found, answer.headers
        times.append(float(found.group(1)))
    return statistics.median(times)


def first_paint_ms(url: str, runs: int) -> float:
    from playwright.sync_api import sync_playwright

    times = []
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM,
                                             args=["--no-sandbox", "--no-proxy-server"])
        try:
            for _ in range(runs):
                context = browser.new_context(viewport={"width": 1366, "height": 768})
                page = context.new_page()
                page.goto(url, wait_until="load")
                paint = page.evaluate(
                    "performance.getEntriesByType('paint')"
                    ".filter(e => e.name === 'first-contentful-paint')"
                    ".map(e => e.startTime)[0]")
                times.append(float(paint))
                context.close()
        finally:
            browser.close()
    return statistics.median(times)


def config_url(engine: sa.Engine) -> str:
    """The engine's URL as a config writes it."""
    return engine.url.render_as_string(hide_password=False).replace(
        "postgresql+psycopg://", "postgresql://")


def measure(url: str, runs: int) -> ServeResult:
    """Serve the database at ``url`` (holding the history already) and measure."""
    engine = sa.create_engine(url.replace("postgresql://", "postgresql+psycopg://"))
    try:
        add_benchmark(engine)
        with engine.connect() as conn:
            accounts = list(conn.execute(sa.text(
                "SELECT DISTINCT account FROM snapshots ORDER BY account")).scalars())
    finally:
        engine.dispose()
    with tempfile.TemporaryDirectory() as tmp, serving(_config(Path(tmp), url, accounts)) \
            as base:
        started = time.perf_counter()
        session = _session()
        for page in PAGES:
            _wait_computed(session, base + page)
            print(f"  {page} computed after {time.perf_counter() - started:.0f} s",
                  file=sys.stderr, flush=True)
        result = ServeResult(time.perf_counter() - started)
        result.pages_ms[f"{FIRST_VISIT} (first visit)"] = server_ms(
            session, base + FIRST_VISIT, 1)
        for page in PAGES:
            result.pages_ms[page] = server_ms(session, base + page, runs)
        if Path(CHROMIUM).exists():
            result.first_paint_ms = first_paint_ms(base + "/", runs)
    return result


def report(result: ServeResult, command: str) -> None:
    print(f"figures computed {result.warm_s:.1f} s after the start (background warm-up)")
    width = max(len(page) for page in [*result.pages_ms, "/ first contentful paint"])
    print(f"| {'page':{width}s} | server time (median) | target | met |")
    print(f"|{'-' * (width + 2)}|{'-' * 22}|{'-' * 8}|-----|")
    for page, ms in result.pages_ms.items():
        print(f"| {page:{width}s} | {ms:17.1f} ms | 300 ms | "
              f"{'yes' if ms <= PAGE_TARGET_MS else 'NO':3s} |")
    paint = result.first_paint_ms
    print(f"| {'/ first contentful paint':{width}s} | {paint / 1000:18.2f} s | 1.5 s  | "
          f"{'yes' if paint / 1000 <= PAINT_TARGET_S else 'NO':3s} |")
    print(f"\n{command}")


def measure_sqlite(runs: int = 5, accounts: int = 50, n_sessions: int = 2500) -> ServeResult:
    """The figures on a temporary SQLite file (for bench_all.py)."""
    with bench_database("sqlite", None) as (engine, empty):
        if empty:
            build(engine, accounts, n_sessions)
        return measure(config_url(engine), runs)


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
        url = config_url(engine)
        result = measure(url, args.runs)
    report(result, "benchmarks/bench_serve.py " + " ".join(sys.argv[1:]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
