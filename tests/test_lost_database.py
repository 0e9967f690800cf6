"""A database lost mid-run loses nothing: the fetched answers go to the spool (exit 75,
the failure ping), and the next run that reaches the database stores them first, with
their original taken_at and final flag, without fetching (or logging in) again.

Under libfaketime after Friday's close, so the spooled snapshots are final."""

from __future__ import annotations

import json
import os
import sqlite3
import stat
import subprocess
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import sqlalchemy as sa

from snapshotter.simulator import KiteSimulator, demo_accounts
from tests.conftest import (
    HANG_GUARD,
    LOCAL_ONLY,
    Recorder,
    ShiftedClock,
    _offset_to,
    config_dict,
    create_pg_database,
    write_config,
)

FRIDAY_EVENING = datetime(2026, 11, 27, 11, 30, tzinfo=UTC)  # 17:00 IST, after the close


def _start(config: Path, lib: str, offset: int) -> subprocess.Popen[str]:
    env = {**os.environ, **LOCAL_ONLY, "LD_PRELOAD": lib, "FAKETIME": f"{offset:+d}",
           "FAKETIME_DONT_FAKE_MONOTONIC": "0"}
    return subprocess.Popen([sys.executable, "-m", "snapshotter", "--config", str(config),
                             "run"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env=env, stdin=subprocess.DEVNULL)


def _when_fetching(sim: KiteSimulator, proc: subprocess.Popen[str], accounts: int) -> None:
    """Wait until every account's data routes were asked for (logins done)."""
    deadline = time.monotonic() + HANG_GUARD
    while sum(p.startswith("/oms/") for _, p, _ in sim.requests_log) < 4 * accounts:
        assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()
        time.sleep(0.02)


def _ledger(url: str) -> list[tuple[str, str, bool, datetime]]:
    engine = sa.create_engine(url)
    with engine.connect() as conn:
        rows = conn.execute(sa.text(
            "SELECT account, status, final, taken_at FROM snapshots ORDER BY account")).all()
        held = conn.execute(sa.text("SELECT COUNT(*) FROM holdings")).scalar()
    engine.dispose()
    assert held
    return [(r[0], r[1], bool(r[2]), r[3]) for r in rows]


def _spooled(state: Path) -> list[dict[str, object]]:
    spool = state / "spool"
    files = sorted(spool.glob("*.json"))
    assert stat.S_IMODE(spool.stat().st_mode) == 0o700
    for f in files:
        assert stat.S_IMODE(f.stat().st_mode) == 0o600
    return [json.loads(f.read_text()) for f in files]


def _lose_and_recover(tmp_path: Path, faketime_lib: str, recorder: Recorder, url: str,
                      accounts_n: int, lose: Callable[[], None],
                      restore: Callable[[], None], latency: float) -> None:
    offset = _offset_to(FRIDAY_EVENING)
    accounts = demo_accounts(accounts_n, seed=41)
    state = tmp_path / "state"
    with KiteSimulator(accounts, latency=latency, clock=ShiftedClock(offset)) as sim:
        cfg = write_config(tmp_path / "config.yaml", config_dict(
            sim, accounts, url, state, healthcheck_url=f"{recorder.base_url}/ping/x"))
        proc = _start(cfg, faketime_lib, offset)
        _when_fetching(sim, proc, accounts_n)
        lose()
        out, err = proc.communicate(timeout=120)
        assert proc.returncode == 75, err
        assert "Traceback" not in err
        spooled = _spooled(state)
        assert sorted(s["account"] for s in spooled) == [a.user_id for a in accounts]
        assert all(s["final"] is True for s in spooled)
        assert str(state / "spool") in err
        assert recorder.wait(1)[0][1] == "/ping/x/fail"
        logins = dict(sim.login_count)

        restore()
        requests_before = len(sim.requests_log)
        proc = _start(cfg, faketime_lib, offset + 60)
        out, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err
        assert "nothing to do" in out, out
        assert len(sim.requests_log) == requests_before  # nothing fetched twice
        assert dict(sim.login_count) == logins
    assert not list((state / "spool").glob("*.json"))
    ledger = _ledger(url)
    taken = {str(s["account"]): datetime.fromisoformat(str(s["taken_at"])) for s in spooled}
    assert [(a, st, fin) for a, st, fin, _ in ledger] == [
        (a.user_id, "ok", True) for a in accounts]
    for account, _st, _fin, taken_at in ledger:
        if isinstance(taken_at, str):
            taken_at = datetime.fromisoformat(taken_at)
        if taken_at.tzinfo is None:
            taken_at = taken_at.replace(tzinfo=UTC)
        assert taken_at == taken[account]


def test_postgres_dropped_mid_run(faketime_lib: str, postgres_server: str, tmp_path: Path,
                                  recorder: Recorder) -> None:
    url = create_pg_database(postgres_server)
    name = url.rsplit("/", 1)[1]
    admin = sa.create_engine(postgres_server, isolation_level="AUTOCOMMIT")

    def drop() -> None:
        with admin.connect() as conn:
            conn.execute(sa.text(f'DROP DATABASE "{name}" WITH (FORCE)'))

    def recreate() -> None:
        with admin.connect() as conn:
            conn.execute(sa.text(f'CREATE DATABASE "{name}"'))

    try:
        _lose_and_recover(tmp_path, faketime_lib, recorder, url, 3, drop, recreate, 0.5)
    finally:
        with admin.connect() as conn:
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def test_sqlite_locked_by_another_program_mid_run(faketime_lib: str, tmp_path: Path,
                                                  recorder: Recorder) -> None:
    """SQLite waits 30 s for a writer that holds the file, then gives up: spooled."""
    path = tmp_path / "snapshots.db"
    holder: list[sqlite3.Connection] = []

    def lock() -> None:
        conn = sqlite3.connect(str(path), timeout=30, isolation_level=None)
        conn.execute("BEGIN IMMEDIATE")
        holder.append(conn)

    def unlock() -> None:
        holder[0].execute("ROLLBACK")
        holder[0].close()

    _lose_and_recover(tmp_path, faketime_lib, recorder, f"sqlite:///{path}", 1, lock, unlock,
                      0.5)
