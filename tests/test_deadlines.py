"""No answer can hang a run, the run lock or the daemon: a route that sends its headers
and then one byte every few seconds (the simulator's "drip" fault)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import sqlalchemy as sa

from snapshotter.simulator import KiteSimulator, demo_accounts
from tests.conftest import LOCAL_ONLY, config_dict, write_config

HOLDINGS = "/oms/portfolio/holdings"


def _popen(cfg: Path, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-m", "snapshotter", "--config", str(cfg), *args],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, **LOCAL_ONLY}, stdin=subprocess.DEVNULL)


def _ledger(url: str) -> list[dict[str, object]]:
    engine = sa.create_engine(url)
    with engine.connect() as conn:
        rows = [dict(r) for r in conn.execute(sa.text(
            "SELECT account, status, error FROM snapshots ORDER BY id")).mappings()]
    engine.dispose()
    return rows


def test_two_runs_3s_apart_against_a_dripping_account_both_end(database_url: str,
                                                                tmp_path: Path) -> None:
    accounts = demo_accounts(2, seed=51)
    slow, healthy = accounts
    with KiteSimulator(accounts) as sim:
        sim.drip_seconds = 1.0
        sim.fail_next(1000, "drip", HOLDINGS, user_id=slow.user_id)
        data = config_dict(sim, accounts, database_url, tmp_path / "state")
        data["kite"].update(timeout=5, retries=1)
        cfg = write_config(tmp_path / "config.yaml", data)
        started = time.monotonic()
        first = _popen(cfg, "run")
        time.sleep(3)
        second = _popen(cfg, "run")
        results = [p.communicate(timeout=90) for p in (first, second)]
        elapsed = time.monotonic() - started
    assert elapsed < 90
    for proc, (_out, err) in zip((first, second), results, strict=True):
        assert proc.returncode == 1, err
        assert f"account {slow.user_id}" in err and "within 5" in err, err
        assert "Traceback" not in err
    ledger = _ledger(database_url)
    assert {r["account"] for r in ledger if r["status"] == "ok"} == {healthy.user_id}
    assert [r["account"] for r in ledger if r["status"] == "failed"] == [slow.user_id] * 2


def test_a_run_ends_at_its_deadline_and_records_the_unfinished(database_url: str,
                                                               tmp_path: Path) -> None:
    accounts = demo_accounts(2, seed=52)
    slow, healthy = accounts
    with KiteSimulator(accounts) as sim:
        sim.drip_seconds = 1.0
        sim.fail_next(1000, "drip", HOLDINGS, user_id=slow.user_id)
        data = config_dict(sim, accounts, database_url, tmp_path / "state")
        data["kite"].update(timeout=60, retries=0, run_timeout=4)
        cfg = write_config(tmp_path / "config.yaml", data)
        started = time.monotonic()
        proc = _popen(cfg, "run")
        _out, err = proc.communicate(timeout=60)
        elapsed = time.monotonic() - started
    assert proc.returncode == 1, err
    assert elapsed < 20, err
    assert f"account {slow.user_id}: run deadline" in err, err
    ledger = _ledger(database_url)
    assert [(r["account"], r["status"]) for r in ledger if r["status"] == "ok"] == [
        (healthy.user_id, "ok")]
    [failed] = [r for r in ledger if r["status"] == "failed"]
    assert failed["account"] == slow.user_id
    assert "run deadline" in str(failed["error"])


def test_daemon_exits_within_10s_of_sigterm_while_a_request_hangs(database_url: str,
                                                                  tmp_path: Path) -> None:
    accounts = demo_accounts(1, seed=53)
    [acc] = accounts
    with KiteSimulator(accounts) as sim:
        sim.drip_seconds = 2.0
        sim.fail_next(1000, "drip", HOLDINGS, user_id=acc.user_id)
        data = config_dict(sim, accounts, database_url, tmp_path / "state")
        data["kite"].update(timeout=120, retries=0)
        cfg = write_config(tmp_path / "config.yaml", data)
        proc = _popen(cfg, "daemon")
        try:
            deadline = time.monotonic() + 60
            while not any(p == HOLDINGS for _, p, _ in sim.requests_log):
                assert proc.poll() is None and time.monotonic() < deadline
                time.sleep(0.05)
            time.sleep(1)
            proc.send_signal(signal.SIGTERM)
            sent = time.monotonic()
            _out, err = proc.communicate(timeout=30)
            elapsed = time.monotonic() - sent
        finally:
            if proc.poll() is None:
                proc.kill()
    assert elapsed < 10, err
    assert proc.returncode == 0, err
    assert "Traceback" not in err
    [row] = _ledger(database_url)
    assert row["status"] == "failed"
    assert "shutting down" in str(row["error"])
