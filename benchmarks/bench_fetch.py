"""Wall time of a full snapshot: 20 simulated accounts, 200 ms of latency per request.

Each account needs 6 requests (login, 2FA, 4 data routes): a one-request-at-a-time
client needs at least 20 * 6 * 0.2 = 24 s. Target: under 3 s, start-up included.
Run: `make bench` (or `.venv/bin/python benchmarks/bench_fetch.py`).
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

from snapshotter.simulator import KiteSimulator, demo_accounts


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--accounts", type=int, default=20)
    parser.add_argument("--latency", type=float, default=0.2)
    parser.add_argument("--concurrency", type=int, default=10)
    args = parser.parse_args()
    accounts = demo_accounts(args.accounts)
    with tempfile.TemporaryDirectory() as tmp, \
            KiteSimulator(accounts, latency=args.latency) as sim:
        config = Path(tmp) / "config.yaml"
        config.write_text(yaml.safe_dump({
            "database": {"url": f"sqlite:///{tmp}/bench.db"},
            "kite": {"base_url": sim.base_url, "concurrency": args.concurrency},
            "state_dir": f"{tmp}/state",
            "accounts": [{"user_id": a.user_id, "password": a.password,
                          "totp_secret": a.totp_secret} for a in accounts],
        }))
        config.chmod(0o600)
        # Migrate first: the timed run is a user's daily run, not the very first one.
        subprocess.run([sys.executable, "-m", "snapshotter", "--config", str(config), "db",
                        "upgrade"], check=True, capture_output=True)
        t0 = time.perf_counter()
        result = subprocess.run(
            [sys.executable, "-m", "snapshotter", "--config", str(config), "run"],
            capture_output=True, text=True)
        wall = time.perf_counter() - t0
        requests = len(sim.requests_log)
    serial = requests * args.latency
    print(f"{args.accounts} accounts, {requests} requests, {args.latency * 1000:.0f} ms "
          f"latency each, concurrency {args.concurrency}")
    print(f"wall time {wall:.2f} s (process start-up included; one request at a time: "
          f">= {serial:.1f} s); exit code {result.returncode}")
    if result.returncode != 0:
        print(result.stderr, file=sys.stderr)
    return result.returncode


if __name__ == "__main__":
    raise SystemExit(main())
