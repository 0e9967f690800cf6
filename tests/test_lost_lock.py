"""A run that loses its run lock mid-run (issue 16 §1): it notices before the next login
and store, logs in no more, keeps what it fetched, says so in one line naming the
database and exits 74; a second run started beside it never sends a TOTP step the first
one sent (each step is reserved in the database), on PostgreSQL and SQLite.

The runs' clocks (libfaketime) and the simulator's start one second into a 30 s TOTP step,
so that the two runs' logins fall in one step and the second has to wait for the next.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from snapshotter.errors import ExitCode
from snapshotter.simulator import KiteSimulator, SimAccount, demo_accounts
from tests.conftest import (
    LOCAL_ONLY,
    Recorder,
    ShiftedClock,
    _offset_to,
    config_dict,
    create_pg_database,
    drop_pg_database,
    query_rows,
    run_cli,
    wait_until,
    write_config,
)

FRIDAY_EVENING = datetime(2026, 11, 27, 11, 30, 1, tzinfo=UTC)  # 17:00:01 IST, a step's 2nd s
PASSWORD = "pg-pass-never-shown-7x"


def _start(config: Path, lib: str, offset: int, *args: str) -> subprocess.Popen[str]:
    env = {**os.environ, **LOCAL_ONLY, "LD_PRELOAD": lib, "FAKETIME": f"{offset:+d}",
           "FAKETIME_DONT_FAKE_MONOTONIC": "0"}
    return subprocess.Popen([sys.executable, "-m", "snapshotter", "--config", str(config),
                             "run", *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env=env, stdin=subprocess.DEVNULL)


def _arrived(sim: KiteSimulator, path: str, user: str) -> Callable[[], bool]:
    return lambda: any(p == path and u == user for _, p, u in sim.requests_log)


def _config(path: Path, sim: KiteSimulator, accounts: list[SimAccount], url: str,
            state: Path, **extra: Any) -> Path:
    """One account at a time (``kite.concurrency: 1``), as measured."""
    data = config_dict(sim, accounts, url, state, **extra)
    data["kite"]["concurrency"] = 1
    return write_config(path, data)


def _with_password(url: str) -> str:
    return url.replace("postgres@", f"postgres:{PASSWORD}@", 1)


def _terminate_lock_backend(admin_url: str, url: str) -> None:
    """What a DBA's pg_terminate_backend (or a crash of that connection) does to the run
    lock's backend (its one-bigint key: objsubid 1)."""
    name = url.rsplit("/", 1)[1]
    engine = sa.create_engine(admin_url, isolation_level="AUTOCOMMIT")
    try:
        with engine.connect() as conn:
            killed = conn.execute(sa.text(
                "SELECT pg_terminate_backend(l.pid) FROM pg_locks l "
                "JOIN pg_database d ON d.oid = l.database "
                "WHERE l.locktype = 'advisory' AND l.objsubid = 1 AND l.granted "
                "AND d.datname = :name"),
                {"name": name}).scalars().all()
    finally:
        engine.dispose()
    assert killed == [True]


def _lock_holders(admin_url: str, url: str) -> int:
    name = url.rsplit("/", 1)[1]
    engine = sa.create_engine(admin_url)
    try:
        with engine.connect() as conn:
            return int(conn.execute(sa.text(
                "SELECT COUNT(*) FROM pg_locks l JOIN pg_database d ON d.oid = l.database "
                "WHERE l.locktype = 'advisory' AND l.objsubid = 1 AND l.granted "
                "AND d.datname = :name"),
                {"name": name}).scalar() or 0)
    finally:
        engine.dispose()


@pytest.fixture
def pg_url(postgres_server: str) -> Iterator[str]:
    url = create_pg_database(postgres_server)
    try:
        yield url
    finally:
        drop_pg_database(postgres_server, url)


@pytest.mark.parametrize("lost_at", ["/api/login", "/api/twofa"])
def test_a_run_that_loses_its_postgres_lock_logs_in_no_more(
        lost_at: str, faketime_lib: str, postgres_server: str, pg_url: str, tmp_path: Path,
        recorder: Recorder) -> None:
    """Measured: a run whose lock backend was terminated went on logging in. Now a login
    whose 2FA was not sent yet stops before it; an account whose 2FA went out is fetched
    and stored; the others are not logged in; one line names the database (password
    hidden); the failure URL is pinged; exit 74."""
    offset = _offset_to(FRIDAY_EVENING)
    accounts = demo_accounts(3, seed=61)
    first, *others = accounts
    with KiteSimulator(accounts, latency=0.5, clock=ShiftedClock(offset)) as sim:
        cfg = _config(tmp_path / "config.yaml", sim, accounts, _with_password(pg_url),
                      tmp_path / "state", healthcheck_url=f"{recorder.base_url}/ping/x")
        proc = _start(cfg, faketime_lib, offset)
        wait_until(_arrived(sim, lost_at, first.user_id), f"{lost_at} of the first account",
                   alive=proc)
        _terminate_lock_backend(postgres_server, pg_url)
        out, err = proc.communicate(timeout=120)
        twofa_sent = lost_at == "/api/twofa"
        assert sim.twofa_count[first.user_id] == int(twofa_sent), out + err
        assert all(sim.login_count[a.user_id] == 0 for a in others), out + err
    assert proc.returncode == 74 == ExitCode.LOCK_LOST, out + err
    assert "Traceback" not in err and PASSWORD not in out + err
    name = pg_url.rsplit("/", 1)[1]
    naming = [line for line in err.splitlines() if name in line]
    assert len(naming) == 1 and "lost the run lock" in naming[0], err
    assert "postgres:***@" in naming[0]
    for acc in others:
        assert f"account {acc.user_id}: not fetched: this run lost its run lock" in err
    rows = query_rows(pg_url, "SELECT account, status FROM snapshots")
    if twofa_sent:  # what it fetched is kept
        assert f"{first.user_id} 2026-11-27: ok, final" in out
        assert rows == [{"account": first.user_id, "status": "ok"}]
    else:
        assert f"account {first.user_id}: not logged in: this run lost its run lock" in err
        assert rows == []
    ping = recorder.wait(1)[0]
    assert ping[1] == "/ping/x/fail" and "run lock lost" in ping[2]


def test_idle_session_timeout_does_not_take_the_lock(
        faketime_lib: str, postgres_server: str, pg_url: str, tmp_path: Path) -> None:
    """Measured: with idle_session_timeout = '2s' on the database, the server closed the
    lock's idle connection and the run went on without its lock. Now the lock's session
    never idles out: it is still held seconds later, and the run stores every account."""
    admin = sa.create_engine(postgres_server, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text(
            f'ALTER DATABASE "{pg_url.rsplit("/", 1)[1]}" SET idle_session_timeout = \'2s\''))
    admin.dispose()
    offset = _offset_to(FRIDAY_EVENING)
    accounts = demo_accounts(3, seed=62)
    with KiteSimulator(accounts, latency=1.0, clock=ShiftedClock(offset)) as sim:
        cfg = _config(tmp_path / "config.yaml", sim, accounts, pg_url, tmp_path / "state")
        proc = _start(cfg, faketime_lib, offset)
        # The third account's login begins at least 6 s (two accounts of three 1 s
        # requests each) after the lock was taken: three idle timeouts.
        wait_until(_arrived(sim, "/api/login", accounts[2].user_id),
                   "the third account's login", alive=proc)
        assert _lock_holders(postgres_server, pg_url) == 1
        out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, out + err
    rows = query_rows(pg_url, "SELECT account, status, final FROM snapshots ORDER BY account")
    assert [(r["account"], r["status"], bool(r["final"])) for r in rows] == [
        (a.user_id, "ok", True) for a in accounts]


def _break_lock(kind: str, admin_url: str | None, url: str) -> None:
    if kind == "postgres":
        assert admin_url is not None
        _terminate_lock_backend(admin_url, url)
    else:  # a clean-up job deleting the SQLite database's lock file under the run
        Path(url.removeprefix("sqlite:///")).with_suffix(".lock").unlink()


@pytest.mark.parametrize("kind", ["sqlite", "postgres"])
def test_two_runs_beside_a_broken_lock_never_send_one_totp_step_twice(
        kind: str, faketime_lib: str, tmp_path: Path, request: pytest.FixtureRequest) -> None:
    """Measured: run B started after run A lost its lock, both logged in in one TOTP step,
    Kite answered "Invalid TOTP" and the account was stored with rejected_credentials.
    Now the step is reserved in the database before each 2FA request: the later login
    waits for the next step. Both runs store the account (B's, forced, replaces A's);
    nothing is rejected."""
    admin = request.getfixturevalue("postgres_server") if kind == "postgres" else None
    url = request.getfixturevalue("pg_url") if kind == "postgres" \
        else f"sqlite:///{tmp_path / 'snapshots.db'}"
    offset = _offset_to(FRIDAY_EVENING)
    acc: SimAccount = demo_accounts(1, seed=63)[0]
    with KiteSimulator([acc], latency=0.5, clock=ShiftedClock(offset)) as sim:
        configs = []
        for host in ("a", "b"):
            data = config_dict(sim, [acc], url, tmp_path / host / "state")
            data["kite"]["timeout"] = 30
            configs.append(write_config(tmp_path / f"{host}.yaml", data))
        # Run A's answers come slowly: it has stored nothing (which B's run would read
        # as a recent attempt) when B logs in.
        sim.slow_seconds = 10
        sim.fail_next(4, "slow", "/oms/", user_id=acc.user_id)
        run_a = _start(configs[0], faketime_lib, offset)
        # Run A's 2FA went out before it lost the lock; run B then logs in in that step.
        wait_until(_arrived(sim, "/api/twofa", acc.user_id), "run A's 2FA", alive=run_a)
        _break_lock(kind, admin, url)
        run_b = _start(configs[1], faketime_lib, offset, "--force")
        out_a, err_a = run_a.communicate(timeout=120)
        out_b, err_b = run_b.communicate(timeout=120)
        failures, blocked = sim.twofa_failures, sim.is_blocked(acc.user_id)
        twofas = sim.twofa_count[acc.user_id]
    assert failures == {} and not blocked and twofas == 2, err_a + err_b
    assert run_b.returncode == 0, out_b + err_b
    assert run_a.returncode == 74 == ExitCode.LOCK_LOST, out_a + err_a
    assert "Traceback" not in err_a + err_b
    rows = query_rows(url, "SELECT status, rejected_credentials FROM snapshots ORDER BY id")
    # A's snapshot, stored and replaced by B's (or, on a slow machine, A's answers came
    # after B's login had ended A's session: A then stopped before logging in again).
    assert [r["status"] for r in rows] in (["superseded", "ok"], ["ok"]), rows
    assert all(r["rejected_credentials"] is None for r in rows)
    steps = query_rows(url, "SELECT account, step FROM totp_steps")
    assert [s["account"] for s in steps] == [acc.user_id]


def _waiting_on_locks(admin_url: str, url: str) -> int:
    """Backends of the database waiting for a lock (a table, a row, an advisory lock)."""
    name = url.rsplit("/", 1)[1]
    engine = sa.create_engine(admin_url)
    try:
        with engine.connect() as conn:
            return int(conn.execute(sa.text(
                "SELECT COUNT(*) FROM pg_stat_activity WHERE datname = :name "
                "AND wait_event_type = 'Lock'"), {"name": name}).scalar() or 0)
    finally:
        engine.dispose()


def test_two_runs_storing_one_session_at_once_never_collide(
        postgres_server: str, pg_url: str, tmp_path: Path) -> None:
    """Measured: two runs (the first had lost its lock) stored one account's session at
    once and one got a raw UniqueViolation. Now the later store waits for the earlier
    one's commit and replaces it, as a re-run does. The runs reuse a cached session (no
    login); the test holds the first run's store mid-transaction (a table lock) until the
    second's store waits too."""
    acc = demo_accounts(1, seed=65)[0]
    with KiteSimulator([acc]) as sim:
        cfg = write_config(tmp_path / "config.yaml",
                           config_dict(sim, [acc], pg_url, tmp_path / "state"))
        logged_in = run_cli("--config", str(cfg), "login", "--account", acc.user_id,
                            env=LOCAL_ONLY)
        assert logged_in.returncode == 0, logged_in.stderr
        holder = sa.create_engine(pg_url)
        conn = holder.connect()
        try:
            conn.execute(sa.text("LOCK TABLE snapshot_totals IN ACCESS EXCLUSIVE MODE"))
            env = {**os.environ, **LOCAL_ONLY}
            runs = [subprocess.Popen(
                [sys.executable, "-m", "snapshotter", "--config", str(cfg), "run"],
                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
                stdin=subprocess.DEVNULL)]
            wait_until(lambda: _waiting_on_locks(postgres_server, pg_url) == 1,
                       "1 store(s) waiting on the table lock", alive=runs[0])
            _terminate_lock_backend(postgres_server, pg_url)
            runs.append(subprocess.Popen(
                [sys.executable, "-m", "snapshotter", "--config", str(cfg), "run"],
                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
                stdin=subprocess.DEVNULL))
            wait_until(lambda: _waiting_on_locks(postgres_server, pg_url) == 2,
                       "2 store(s) waiting on the table lock", alive=runs[1])
        finally:
            conn.rollback()
            conn.close()
            holder.dispose()
        results = [run.communicate(timeout=120) for run in runs]
        logins = sim.login_count[acc.user_id]
    first, second = runs
    output = "".join(out + err for out, err in results)
    assert "UniqueViolation" not in output and "refused a row" not in output, output
    assert "Traceback" not in output
    assert second.returncode == 0, output
    # The first run's check before storing came before its lock was lost.
    assert first.returncode in (0, 74), output
    assert logins == 1  # `login` only: both runs used its session
    rows = query_rows(pg_url, "SELECT status FROM snapshots ORDER BY id")
    assert [r["status"] for r in rows] == ["superseded", "ok"]
