"""No answer can hang a run, the run lock or the daemon: a route that sends its headers
and then one byte every few seconds (the simulator's "drip" fault)."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import sqlalchemy as sa

from snapshotter.simulator import KiteSimulator, SimAccount, demo_accounts
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


@contextlib.contextmanager
def _dripping(n: int, seed: int, database_url: str, tmp_path: Path, drip_seconds: float,
              **kite: float) -> Iterator[tuple[KiteSimulator, list[SimAccount], Path]]:
    """A simulator whose first account's holdings answer drips; a config for it."""
    accounts = demo_accounts(n, seed=seed)
    with KiteSimulator(accounts) as sim:
        sim.drip_seconds = drip_seconds
        sim.fail_next(1000, "drip", HOLDINGS, user_id=accounts[0].user_id)
        data = config_dict(sim, accounts, database_url, tmp_path / "state")
        data["kite"].update(kite)
        yield sim, accounts, write_config(tmp_path / "config.yaml", data)


def test_two_runs_3s_apart_against_a_dripping_account_both_end(database_url: str,
                                                                tmp_path: Path) -> None:
    with _dripping(2, 51, database_url, tmp_path, 1.0, timeout=5, retries=1) as (
            _sim, accounts, cfg):
        slow, healthy = accounts
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
    with _dripping(2, 52, database_url, tmp_path, 1.0, timeout=60, retries=0,
                   run_timeout=4) as (_sim, accounts, cfg):
        slow, healthy = accounts
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
    with _dripping(1, 53, database_url, tmp_path, 2.0, timeout=120, retries=0) as (
            sim, _accounts, cfg):
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
