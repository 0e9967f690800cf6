"""CPU per account of normalize + store: simulated portfolios into a fresh SQLite file.

Each account is what ``snapshotter run`` does once its answers are in:
``normalize.normalize_snapshot`` then ``store.writes.store_snapshot`` (one transaction),
timed with the process CPU clock (and the wall clock) per account, after a warm-up.
The portfolios are ``snapshotter.simulator.make_portfolio(seed)``, the same for every tree.

``--baseline REF`` also times the code of git revision REF (its ``snapshotter/`` and
``migrations/`` copied to a temporary folder), alternating the two trees ``--rounds``
times in fresh processes, so that both are measured under the same load.

``--batch N``: this tree stores N accounts per transaction (``store_snapshots``, as a
run stores the accounts whose fetches ended together).

Run: ``.venv/bin/python benchmarks/bench_normalize.py --accounts 200 --baseline main``.
Not a test.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from datetime import UTC, date, datetime
from io import BytesIO
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
DAY = date(2026, 11, 27)
WARM_UP = 5


def measure(accounts: int, url: str) -> dict[str, float]:
    """Per-account milliseconds (median over ``accounts``), in this process's tree."""
    from snapshotter.normalize import normalize_snapshot
    from snapshotter.simulator import make_portfolio
    from snapshotter.store import engine as db
    from snapshotter.store import migrate
    from snapshotter.store import writes as store

    engine = db.make_engine(url)
    migrate.upgrade(url, engine)
    portfolios = [make_portfolio(seed) for seed in range(accounts + WARM_UP)]
    cpu: dict[str, list[float]] = {"normalize": [], "store": [], "both": []}
    wall: list[float] = []
    rows = 0
    for number, payloads in enumerate(portfolios):
        account = f"BN{number:04d}"
        w0, c0 = time.perf_counter(), time.process_time()
        normalized = normalize_snapshot(payloads, account, DAY)
        c1 = time.process_time()
        stored = store.store_snapshot(
            engine, account=account, snapshot_date=DAY,
            taken_at=datetime(2026, 11, 27, 11, tzinfo=UTC), final=True,
            payloads=payloads, frames=_tables(normalized), duration_ms=1,
            warnings=normalized.warnings)
        c2, w2 = time.process_time(), time.perf_counter()
        if number < WARM_UP:
            continue
        rows += sum(stored.counts.values())
        cpu["normalize"].append((c1 - c0) * 1000)
        cpu["store"].append((c2 - c1) * 1000)
        cpu["both"].append((c2 - c0) * 1000)
        wall.append((w2 - w0) * 1000)
    engine.dispose()
    return _result(cpu, wall, rows, accounts)


def measure_batches(accounts: int, url: str, batch: int) -> dict[str, float]:
    """As ``measure``, the accounts stored ``batch`` at a time in one transaction
    (``store.writes.store_snapshots``, as a run stores the accounts that ended
    together), normalized in one pass where the tree can (``normalize_snapshots``);
    per account: each batch's time over its accounts."""
    from snapshotter import normalize
    from snapshotter.normalize import normalize_snapshot
    from snapshotter.simulator import make_portfolio
    from snapshotter.store import engine as db
    from snapshotter.store import migrate
    from snapshotter.store import writes as store

    normalize_snapshots = getattr(normalize, "normalize_snapshots", None)
    engine = db.make_engine(url)
    migrate.upgrade(url, engine)
    portfolios = [make_portfolio(seed) for seed in range(accounts + WARM_UP)]
    cpu: dict[str, list[float]] = {"normalize": [], "store": [], "both": []}
    wall: list[float] = []
    rows = 0
    for start in range(0, len(portfolios), batch):
        group = list(enumerate(portfolios))[start:start + batch]
        w0, c0 = time.perf_counter(), time.process_time()
        items = []
        together = normalize_snapshots([(p, f"BN{n:04d}") for n, p in group], DAY) \
            if normalize_snapshots else [None] * len(group)
        for (number, payloads), found in zip(group, together, strict=True):
            account = f"BN{number:04d}"
            normalized = found or normalize_snapshot(payloads, account, DAY)
            items.append(store.NewSnapshot(account, DAY, datetime(2026, 11, 27, 11, tzinfo=UTC),
                                           True, payloads, normalized.tables, 1,
                                           normalized.warnings))
        c1 = time.process_time()
        stored = store.store_snapshots(engine, items)
        c2, w2 = time.process_time(), time.perf_counter()
        if start < WARM_UP:
            continue
        rows += sum(sum(s.counts.values()) for s in stored)
        for values, spent in ((cpu["normalize"], c1 - c0), (cpu["store"], c2 - c1),
                              (cpu["both"], c2 - c0), (wall, w2 - w0)):
            values += [spent * 1000 / len(group)] * len(group)
    engine.dispose()
    return _result(cpu, wall, rows, len(cpu["both"]))


def _result(cpu: dict[str, list[float]], wall: list[float], rows: int,
            accounts: int) -> dict[str, float]:
    result = {f"{name}_cpu_ms": statistics.mean(values) for name, values in cpu.items()}
    result["both_wall_ms"] = statistics.mean(wall)
    result["rows_per_account"] = rows / accounts
    return result


def _tables(normalized: Any) -> Any:
    """What the store takes (``frames``, DataFrames, before the tables were columns)."""
    return getattr(normalized, "tables", None) or normalized.frames


def _tree_of(ref: str, into: Path) -> Path:
    archive = subprocess.run(["git", "-C", str(ROOT), "archive", "--format=tar", ref,
                              "snapshotter", "migrations"], check=True,
                             capture_output=True).stdout
    with tarfile.open(fileobj=BytesIO(archive)) as tar:
        tar.extractall(into, filter="data")
    return into


def _run_worker(tree: Path, accounts: int, tmp: Path, label: str,
                batch: int = 1) -> dict[str, float]:
    url = f"sqlite:///{tmp}/{label}-{time.monotonic_ns()}.db"
    out = subprocess.run(
        [sys.executable, str(Path(__file__).resolve()), "--worker", "--accounts",
         str(accounts), "--url", url, "--batch", str(batch)],
        check=True, capture_output=True, text=True, cwd=tree,
        env={**os.environ, "PYTHONPATH": str(tree)})
    return dict(json.loads(out.stdout))


def _show(label: str, runs: list[dict[str, float]]) -> dict[str, float]:
    best = min(runs, key=lambda run: run["both_cpu_ms"])
    print(f"{label:>10}: normalize {best['normalize_cpu_ms']:6.2f} ms CPU, "
          f"store {best['store_cpu_ms']:6.2f} ms CPU, both {best['both_cpu_ms']:6.2f} ms CPU "
          f"({best['both_wall_ms']:6.2f} ms wall) per account, "
          f"{best['rows_per_account']:.0f} rows per account")
    return best


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--accounts", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--baseline", metavar="REF", help="also time git revision REF")
    parser.add_argument("--batch", type=int, default=1,
                        help="this tree stores this many accounts per transaction (as a "
                             "run stores those that ended together)")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--url", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(measure(args.accounts, args.url) if args.batch <= 1
                         else measure_batches(args.accounts, args.url, args.batch)))
        return 0
    with tempfile.TemporaryDirectory() as name:
        tmp = Path(name)
        trees = {"this tree": ROOT}
        if args.baseline:
            trees = {args.baseline: _tree_of(args.baseline, tmp / "baseline"), **trees}
        runs: dict[str, list[dict[str, Any]]] = {label: [] for label in trees}
        for _ in range(args.rounds):
            for label, tree in trees.items():
                runs[label].append(_run_worker(tree, args.accounts, tmp, "db",
                                               args.batch if tree == ROOT else 1))
    print(f"normalize + store, {args.accounts} simulated accounts into SQLite, mean per "
          f"account, the best of {args.rounds} rounds"
          + (f"; this tree {args.batch} accounts per transaction:" if args.batch > 1
             else ":"))
    best = {label: _show(label, found) for label, found in runs.items()}
    if args.baseline:
        ratio = best[args.baseline]["both_cpu_ms"] / best["this tree"]["both_cpu_ms"]
        print(f"this tree: {ratio:.1f}x less CPU per account than {args.baseline}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
