"""`snapshotter demo` and `snapshotter simulate`: the real job against the bundled simulator."""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path
from typing import Any

import yaml

from snapshotter import db, pipeline
from snapshotter.config import parse_config
from snapshotter.simulator import KiteSimulator, SimAccount, demo_accounts, serve_forever_cli
from snapshotter.summary import summary_table


def demo_config_dict(base_url: str, accounts: list[SimAccount], database_url: str,
                     state_dir: Path) -> dict[str, Any]:
    return {
        "database": {"url": database_url},
        "kite": {"base_url": base_url, "api_root": base_url, "backoff": 0.05},
        "state_dir": str(state_dir),
        "accounts": [{"user_id": a.user_id, "password": a.password,
                      "totp_secret": a.totp_secret} for a in accounts],
    }


def write_private_yaml(path: Path, data: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        fh.write("# Written by `snapshotter simulate`: simulator accounts, not real ones.\n")
        yaml.safe_dump(data, fh, sort_keys=False)
    os.chmod(path, 0o600)


def simulate(*, port: int, accounts: int, latency: float, config_out: str | None) -> None:
    sim_accounts = demo_accounts(accounts)
    if config_out:
        path = Path(config_out)
        write_private_yaml(path, demo_config_dict(
            f"http://127.0.0.1:{port}", sim_accounts, "sqlite:///simulated.db",
            path.parent / "state"))
        print(f"wrote {path} (mode 0600) for {accounts} simulated account(s)")
    serve_forever_cli(port, sim_accounts, latency)


def run_demo(*, out_dir: str, accounts: int) -> int:
    out = Path(out_dir).resolve()
    out.mkdir(parents=True, exist_ok=True)
    # A fresh simulator each time: start from an empty database and token cache.
    (out / "demo.db").unlink(missing_ok=True)
    shutil.rmtree(out / "state", ignore_errors=True)
    database_url = f"sqlite:///{out / 'demo.db'}"
    sim_accounts = demo_accounts(accounts)
    with KiteSimulator(sim_accounts) as sim:
        config = parse_config(demo_config_dict(sim.base_url, sim_accounts, database_url,
                                               out / "state"), "<demo>")
        engine = db.make_engine(database_url)
        try:
            db.upgrade(database_url, engine)
            print(f"Kite simulator on {sim.base_url}; database {out / 'demo.db'}")
            t0 = time.perf_counter()
            first = pipeline.run_snapshot(config, engine)
            elapsed = time.perf_counter() - t0
            for o in sorted(first.outcomes, key=lambda o: o.account):
                state = "final" if o.final else "intraday"
                print(f"  {o.account}: {o.status} ({state}), logins {o.logins}, "
                      + ", ".join(f"{k} {v}" for k, v in o.counts.items())
                      + (f" error: {o.error}" if o.error else ""))
            print(f"snapshot of session {first.session.day} took {elapsed:.2f}s "
                  f"({sum(sim.login_count.values())} logins)\n")
            print(summary_table(engine, first.session.day))
            second = pipeline.run_snapshot(config, engine)
            skipped = sum(o.status == pipeline.SKIPPED for o in second.outcomes)
            print(f"\nsecond run: {skipped} account(s) skipped (final snapshot kept), "
                  f"{len(second.outcomes) - skipped} re-taken (session still open), "
                  f"logins in total {sum(sim.login_count.values())}")
            return max(first.exit_code, second.exit_code)
        finally:
            engine.dispose()
