"""Wall time of a full snapshot (`snapshotter run` against the simulator), with the
requests in flight and the run's peak RSS.

Each account needs 6 requests (login, 2FA, 4 data routes): a one-request-at-a-time
client needs at least accounts * 6 * latency (20 accounts at 200 ms: 24 s).
In flight: requests the simulator is handling at once (its latency sleep included),
counted in this process; "mean in flight" is time-weighted from the first request to
the last. Run: `.venv/bin/python benchmarks/bench_fetch.py --accounts 200 --latency 0.2
--concurrency 50` (`make bench` runs the table in bench_all.py).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from snapshotter.simulator import KiteSimulator, demo_accounts

ROOT = Path(__file__).resolve().parent.parent


@dataclass
class FetchResult:
    accounts: int
    latency: float
    concurrency: int
    wall: float  # seconds, process start-up included
    requests: int
    peak_in_flight: int
    mean_in_flight: float
    peak_rss_mb: float
    exit_code: int
    stderr: str


class InFlight:
    """Counts the simulator's requests in flight (wraps its responder)."""

    def __init__(self, sim: KiteSimulator):
        self._lock = threading.Lock()
        self.now = 0
        self.peak = 0
        self._area = 0.0  # in-flight x seconds
        self._last = 0.0
        self.first: float | None = None
        respond = sim._respond

        def counting(request: Any) -> Any:
            self._step(+1)
            try:
                return respond(request)
            finally:
                self._step(-1)

        sim._respond = counting  # type: ignore[method-assign]

    def _step(self, delta: int) -> None:
        with self._lock:
            t = time.perf_counter()
            if self.first is None:
                self.first = t
            else:
                self._area += self.now * (t - self._last)
            self._last = t
            self.now += delta
            self.peak = max(self.peak, self.now)

    @property
    def mean(self) -> float:
        with self._lock:
            span = self._last - (self.first or self._last)
            return self._area / span if span > 0 else 0.0


def write_config(path: Path, tmp: str, base_url: str, accounts: list[Any],
                 concurrency: int) -> Path:
    path.write_text(yaml.safe_dump({
        "database": {"url": f"sqlite:///{tmp}/bench.db"},
        "kite": {"base_url": base_url, "concurrency": concurrency},
        "state_dir": f"{tmp}/state",
        "accounts": [{"user_id": a.user_id, "password": a.password,
                      "totp_secret": a.totp_secret} for a in accounts],
    }))
    path.chmod(0o600)
    return path


def installed_bytecode(root: Path = ROOT) -> None:
    """Compile the package and its migrations under ``root`` to bytecode, as installing
    it does (pip compiles what it installs, the wheel's migrations included; Python
    writes bytecode on first import). Without it a checkout run with
    PYTHONDONTWRITEBYTECODE=1 (set on these machines) compiles every module of ours from
    source in every process: about 0.1 s of each command's start-up, and 0.15-0.2 s more
    for the migrations of a new database, that no installed program pays."""
    trees = [str(root / name) for name in ("snapshotter", "migrations") if (root / name).is_dir()]
    subprocess.run([sys.executable, "-m", "compileall", "-q", *trees], check=True,
                   stdout=subprocess.DEVNULL)


def snapshotter(*args: str) -> list[str]:
    return [sys.executable, "-m", "snapshotter", *args]


def env() -> dict[str, str]:
    path = os.environ.get("PYTHONPATH")
    return {**os.environ, "PYTHONPATH": f"{ROOT}{os.pathsep}{path}" if path else str(ROOT)}


def measure(accounts: int, latency: float, concurrency: int) -> FetchResult:
    sim_accounts = demo_accounts(accounts)
    with tempfile.TemporaryDirectory() as tmp, \
            KiteSimulator(sim_accounts, latency=latency) as sim:
        config = write_config(Path(tmp) / "config.yaml", tmp, sim.base_url, sim_accounts,
                              concurrency)
        # Migrate first: the timed run is a user's daily run, not the very first one.
        subprocess.run(snapshotter("--config", str(config), "db", "upgrade"), check=True,
                       capture_output=True, env=env())
        in_flight = InFlight(sim)
        wall, rss, result = run_measured(snapshotter("--config", str(config), "run"))
        return FetchResult(accounts, latency, concurrency, wall, len(sim.requests_log),
                           in_flight.peak, in_flight.mean, rss, result.returncode,
                           result.stderr)


def run_measured(command: list[str]) -> tuple[float, float, subprocess.CompletedProcess[str]]:
    """Wall seconds, the child's own peak RSS (MB) and its result."""
    wall, usage, result = run_with_usage(command, env())
    return wall, usage.ru_maxrss / 1024, result


def run_with_usage(command: list[str], environ: dict[str, str], cwd: str | None = None,
                   ) -> tuple[float, Any, subprocess.CompletedProcess[str]]:
    """Wall seconds, the child's own resource usage (``os.wait4``) and its result;
    ``cwd``: where it runs (`python -m` puts it first on sys.path)."""
    t0 = time.perf_counter()
    child = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             stdin=subprocess.DEVNULL, env=environ, cwd=cwd)
    out, err = _drain(child)
    _, status, usage = os.wait4(child.pid, 0)
    wall = time.perf_counter() - t0
    code = os.waitstatus_to_exitcode(status)
    child.returncode = code
    return wall, usage, subprocess.CompletedProcess(
        command, code, out.decode(errors="replace"), err.decode(errors="replace"))


def _drain(child: subprocess.Popen[bytes]) -> tuple[bytes, bytes]:
    """Read both pipes to their end without reaping the child (wait4 does that)."""
    chunks: dict[str, list[bytes]] = {"out": [], "err": []}

    def read(name: str, stream: Any) -> None:
        for block in iter(lambda: stream.read(65536), b""):
            chunks[name].append(block)

    readers = [threading.Thread(target=read, args=(name, stream))
               for name, stream in (("out", child.stdout), ("err", child.stderr))]
    for reader in readers:
        reader.start()
    for reader in readers:
        reader.join()
    return b"".join(chunks["out"]), b"".join(chunks["err"])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--accounts", type=int, default=20)
    parser.add_argument("--latency", type=float, default=0.2)
    parser.add_argument("--concurrency", type=int, default=10)
    args = parser.parse_args()
    installed_bytecode()
    r = measure(args.accounts, args.latency, args.concurrency)
    print(f"{r.accounts} accounts, {r.requests} requests, {r.latency * 1000:.0f} ms latency "
          f"each, concurrency {r.concurrency}")
    print(f"wall time {r.wall:.2f} s (process start-up included; one request at a time: "
          f">= {r.requests * r.latency:.1f} s); exit code {r.exit_code}")
    print(f"in flight: peak {r.peak_in_flight}, mean {r.mean_in_flight:.1f}; "
          f"peak RSS {r.peak_rss_mb:.0f} MB")
    if r.exit_code != 0:
        print(r.stderr, file=sys.stderr)
    return r.exit_code


if __name__ == "__main__":
    raise SystemExit(main())
