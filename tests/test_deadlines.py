"""No answer can hang a run, the run lock or the daemon: a route that sends its headers
and then one byte every few seconds (the simulator's "drip" fault)."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import sqlalchemy as sa

from snapshotter.simulator import KiteSimulator, SimAccount, demo_accounts
from tests.conftest import HANG_GUARD, LOCAL_ONLY, config_dict, wait_until, write_config

HOLDINGS = "/oms/portfolio/holdings"


def _popen(cfg: Path, *args: str, env: dict[str, str] | None = None) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-m", "snapshotter", "--config", str(cfg), *args],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, **LOCAL_ONLY, **(env or {})},
                            stdin=subprocess.DEVNULL)


def _ledger(url: str) -> list[dict[str, object]]:
    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            return [dict(r) for r in conn.execute(sa.text(
                "SELECT account, status, error FROM snapshots ORDER BY id")).mappings()]
    except sa.exc.SQLAlchemyError:  # not created yet: the command is still migrating
        return []
    finally:
        engine.dispose()


def _holdings_asked(sim: KiteSimulator, account: SimAccount) -> bool:
    return ("GET", HOLDINGS, account.user_id) in sim.requests_log


@contextlib.contextmanager
def _dripping(n: int, seed: int, database_url: str, tmp_path: Path, drip_seconds: float,
              **kite: float) -> Iterator[tuple[KiteSimulator, list[SimAccount], Path]]:
    """A simulator whose first account's holdings answer drips (for hours: one byte every
    ``drip_seconds``); a config for it."""
    accounts = demo_accounts(n, seed=seed)
    with KiteSimulator(accounts) as sim:
        sim.drip_seconds = drip_seconds
        sim.fail_next(1000, "drip", HOLDINGS, user_id=accounts[0].user_id)
        data = config_dict(sim, accounts, database_url, tmp_path / "state")
        data["kite"].update(kite)
        yield sim, accounts, write_config(tmp_path / "config.yaml", data)


def test_a_run_started_while_another_waits_on_a_dripping_account_both_end(
        database_url: str, tmp_path: Path) -> None:
    with _dripping(2, 51, database_url, tmp_path, 1.0, timeout=5, retries=1) as (
            sim, accounts, cfg):
        slow, healthy = accounts
        first = _popen(cfg, "run")
        # The second starts while the first holds the run lock, its answer dripping.
        wait_until(lambda: _holdings_asked(sim, slow), "the first run's holdings request",
                   alive=first)
        second = _popen(cfg, "run")
        results = [p.communicate(timeout=HANG_GUARD) for p in (first, second)]
    for proc, (_out, err) in zip((first, second), results, strict=True):
        assert proc.returncode == 1, err
        assert f"account {slow.user_id}" in err and "within 5" in err, err
        assert "Traceback" not in err
    ledger = _ledger(database_url)
    assert {r["account"] for r in ledger if r["status"] == "ok"} == {healthy.user_id}
    assert [r["account"] for r in ledger if r["status"] == "failed"] == [slow.user_id] * 2


def test_a_run_ends_at_its_deadline_and_records_the_unfinished(
        database_url: str, tmp_path: Path, faketime_lib: str) -> None:
    """The run's clock is injected (libfaketime, read from a file): it jumps past the run's
    deadline once the healthy account is stored and the other's answer is dripping."""
    clock_file = tmp_path / "faketime"
    clock_file.write_text("+0\n", encoding="utf-8")
    env = {"LD_PRELOAD": faketime_lib, "FAKETIME_TIMESTAMP_FILE": str(clock_file),
           "FAKETIME_CACHE_DURATION": "1", "FAKETIME_DONT_FAKE_MONOTONIC": "0"}
    # Each request may take an hour: only the run's deadline can end this run.
    with _dripping(2, 52, database_url, tmp_path, 1.0, timeout=3600, retries=0,
                   run_timeout=600) as (sim, accounts, cfg):
        slow, healthy = accounts
        proc = _popen(cfg, "run", env=env)
        try:
            wait_until(lambda: _holdings_asked(sim, slow) and [
                (r["account"], r["status"]) for r in _ledger(database_url)] == [
                (healthy.user_id, "ok")], "the healthy account stored", alive=proc)
            clock_file.write_text("+900\n", encoding="utf-8")  # past kite.run_timeout
            _out, err = proc.communicate(timeout=HANG_GUARD)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.communicate()
    assert proc.returncode == 1, err
    assert f"account {slow.user_id}: run deadline" in err, err
    ledger = _ledger(database_url)
    assert [(r["account"], r["status"]) for r in ledger if r["status"] == "ok"] == [
        (healthy.user_id, "ok")]
    [failed] = [r for r in ledger if r["status"] == "failed"]
    assert failed["account"] == slow.user_id
    assert "run deadline" in str(failed["error"])


def test_daemon_exits_on_sigterm_while_a_request_hangs(database_url: str,
                                                      tmp_path: Path) -> None:
    # The request would drip for hours and may take an hour: only the shutdown ends it.
    with _dripping(1, 53, database_url, tmp_path, 2.0, timeout=3600, retries=0) as (
            sim, accounts, cfg):
        proc = _popen(cfg, "daemon")
        try:
            wait_until(lambda: _holdings_asked(sim, accounts[0]), "the holdings request",
                       alive=proc)
            proc.send_signal(signal.SIGTERM)
            _out, err = proc.communicate(timeout=HANG_GUARD)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.communicate()
    assert proc.returncode == 0, err
    assert "Traceback" not in err
    [row] = _ledger(database_url)
    assert row["status"] == "failed"
    assert "shutting down" in str(row["error"])
