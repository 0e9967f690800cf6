"""Start-up cost of the commands that only print: `snapshotter --help` over `python -c
pass`, and `snapshotter status` with 3 accounts (each stored once, the database at head).

Median of --runs runs of each. Run: `.venv/bin/python benchmarks/bench_startup.py`
(`make bench` runs the whole table in bench_all.py).
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from bench_fetch import env, installed_bytecode, snapshotter, write_config

from snapshotter.simulator import KiteSimulator, demo_accounts


@dataclass
class StartupResult:
    python: float  # `python -c pass`, seconds
    help: float
    version: float
    status: float

    @property
    def help_over_python(self) -> float:
        return self.help - self.python


def median_wall(command: list[str], runs: int, ok: tuple[int, ...] = (0,)) -> float:
    walls = []
    for _ in range(runs):
        t0 = time.perf_counter()
        result = subprocess.run(command, capture_output=True, text=True, env=env(),
                                stdin=subprocess.DEVNULL)
        walls.append(time.perf_counter() - t0)
        if result.returncode not in ok:
            raise SystemExit(f"{' '.join(command)}: exit code {result.returncode}\n"
                             f"{result.stderr}")
    return statistics.median(walls)


def measure(runs: int = 5) -> StartupResult:
    installed_bytecode()
    python = median_wall([sys.executable, "-c", "pass"], runs)
    help_ = median_wall(snapshotter("--help"), runs)
    version = median_wall(snapshotter("--version"), runs)
    accounts = demo_accounts(3)
    with tempfile.TemporaryDirectory() as tmp, KiteSimulator(accounts) as sim:
        config = str(write_config(Path(tmp) / "config.yaml", tmp, sim.base_url, accounts, 10))
        subprocess.run(snapshotter("--config", config, "run"), check=True,
                       capture_output=True, env=env())
        # 1: an account lacks the latest session (e.g. one opened since the run).
        status = median_wall(snapshotter("--config", config, "status"), runs, ok=(0, 1))
    return StartupResult(python, help_, version, status)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    r = measure(args.runs)
    print(f"python -c pass          {r.python:.3f} s")
    print(f"snapshotter --help      {r.help:.3f} s ({r.help_over_python:+.3f} s over python)")
    print(f"snapshotter --version   {r.version:.3f} s")
    print(f"snapshotter status      {r.status:.3f} s (3 accounts, database at head)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
