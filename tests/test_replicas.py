"""Several replicas, one snapshot: two `snapshotter run`s (two "hosts": separate state
directories) against one database, started together and a minute apart, under a shifted
clock (libfaketime, as users rehearse a schedule)."""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest
import sqlalchemy as sa

from snapshotter.simulator import KiteSimulator, demo_accounts
from tests.conftest import ShiftedClock, _offset_to, config_dict, write_config


def _start_run(config: Path, lib: str, offset: int) -> subprocess.Popen[str]:
    env = {**os.environ, "LD_PRELOAD": lib, "FAKETIME": f"{offset:+d}",
           "FAKETIME_DONT_FAKE_MONOTONIC": "0"}
    return subprocess.Popen([sys.executable, "-m", "snapshotter", "--config", str(config),
                             "run"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env=env, stdin=subprocess.DEVNULL)


@pytest.mark.parametrize("apart", [0, 60], ids=["together", "a-minute-apart"])
def test_two_replicas_one_login_one_snapshot(faketime_lib: str, database_url: str,
                                             tmp_path: Path, apart: int) -> None:
    # Friday 2026-11-27 17:00 IST: after the close, the replicas' timer fires.
    offset = _offset_to(datetime(2026, 11, 27, 11, 30, tzinfo=UTC))
    accounts = demo_accounts(3, seed=21)
    clock = ShiftedClock(offset)
    with KiteSimulator(accounts, latency=0.1, clock=clock) as sim:
        configs = []
        for host in ("host-a", "host-b"):
            data = config_dict(sim, accounts, database_url, tmp_path / host / "state")
            configs.append(write_config(tmp_path / f"{host}.yaml", data))
        first = _start_run(configs[0], faketime_lib, offset)
        if apart:
            # The other host's timer fires a minute later, after the first run ended.
            results = [first.communicate(timeout=120)]
            clock.offset += apart
            second = _start_run(configs[1], faketime_lib, offset + apart)
            results.append(second.communicate(timeout=120))
        else:
            second = _start_run(configs[1], faketime_lib, offset)
            results = [p.communicate(timeout=120) for p in (first, second)]
    for proc, (_out, err) in zip((first, second), results, strict=True):
        assert proc.returncode == 0, err
    outputs = [out for out, _ in results]
    assert sum("nothing to do" in out for out in outputs) == 1, outputs
    for acc in accounts:
        assert sim.login_count[acc.user_id] == 1
        assert sim.twofa_count[acc.user_id] == 1
    engine = sa.create_engine(database_url)
    with engine.connect() as conn:
        ledger = conn.execute(sa.text(
            "SELECT account, snapshot_date, status, final FROM snapshots ORDER BY account")).all()
    engine.dispose()
    assert [(r[0], str(r[1]), r[2], bool(r[3])) for r in ledger] == [
        (a.user_id, "2026-11-27", "ok", True) for a in accounts]


def test_run_under_faketime_on_a_holiday_says_nothing_to_do(faketime_lib: str,
                                                            database_url: str,
                                                            tmp_path: Path) -> None:
    """The timer fires on a holiday after the previous session was stored: no login."""
    accounts = demo_accounts(2, seed=22)
    friday = _offset_to(datetime(2026, 11, 23, 11, 30, tzinfo=UTC))  # Mon 23rd, 17:00 IST
    holiday = _offset_to(datetime(2026, 11, 24, 11, 30, tzinfo=UTC))  # Tue 24th: holiday
    with KiteSimulator(accounts, clock=ShiftedClock(friday)) as sim:
        cfg = write_config(tmp_path / "config.yaml",
                           config_dict(sim, accounts, database_url, tmp_path / "state"))
        out, err = _start_run(cfg, faketime_lib, friday).communicate(timeout=120)
        assert "2026-11-23: ok, final" in out, err
        requests_before = len(sim.requests_log)
        proc = _start_run(cfg, faketime_lib, holiday)
        out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err
    assert "nothing to do" in out and "2026-11-23" in out
    assert len(sim.requests_log) == requests_before
