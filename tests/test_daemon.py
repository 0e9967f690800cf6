"""The daemon: session trigger, a job firing at its time (injected clock), catch-up,
retries, and SIGTERM in the middle of a run."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time as systime
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, time
from pathlib import Path

import pytest
import sqlalchemy as sa

from snapshotter import pipeline
from snapshotter.config import Config, parse_config
from snapshotter.ops.daemon import Daemon, SessionTrigger
from snapshotter.sessions import IST, ManualClock, TradingCalendar
from snapshotter.simulator import KiteSimulator, SimAccount, demo_accounts
from snapshotter.store import engine as db
from snapshotter.store import migrate
from snapshotter.store.models import COUNT_COLUMNS
from tests.conftest import HANG_GUARD, config_dict, scheduler_clock, write_config


def _ist(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=IST)


@pytest.mark.parametrize(("now", "expected"), [
    ("2026-11-27T12:00", "2026-11-27T16:30"),  # a session day, before the run time
    ("2026-11-27T16:31", "2026-11-30T16:30"),  # Friday after the run -> Monday
    ("2026-11-23T17:00", "2026-11-25T16:30"),  # skips the 2026-11-24 holiday
    ("2024-11-01T12:00", "2024-11-01T19:30"),  # Muhurat 18:00-19:00: close + 30 min
    ("2026-01-31T12:00", "2026-02-01T16:30"),  # Budget Sunday
    ("2027-01-29T17:00", "2027-02-01T16:30"),  # past the holiday horizon: weekdays
])
def test_session_trigger(now: str, expected: str) -> None:
    trigger = SessionTrigger(TradingCalendar(), time(16, 30))
    assert trigger.get_next_fire_time(None, _ist(now)) == _ist(expected)


def test_session_trigger_after_previous_fire() -> None:
    trigger = SessionTrigger(TradingCalendar(), time(16, 30))
    fired = _ist("2026-11-27T16:30")
    assert trigger.get_next_fire_time(fired, fired) == _ist("2026-11-30T16:30")



@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> ManualClock:
    """One injected clock for our code and for APScheduler's notion of now."""
    return scheduler_clock(monkeypatch, _ist("2026-11-27T16:29:00"))


@pytest.fixture
def world(clock: ManualClock, database_url: str, tmp_path: Path
          ) -> Iterator[tuple[Config, sa.Engine, KiteSimulator, list[SimAccount]]]:
    accounts = demo_accounts(2, seed=11)
    with KiteSimulator(accounts, clock=clock) as sim:
        config = parse_config(config_dict(sim, accounts, database_url, tmp_path / "state"))
        engine = db.make_engine(database_url)
        migrate.upgrade(database_url, engine)
        yield config, engine, sim, accounts
        engine.dispose()


@contextmanager
def running(d: Daemon, catch_up: bool = True) -> Iterator[Daemon]:
    """A started daemon, always stopped afterwards."""
    d.start(catch_up=catch_up)
    try:
        yield d
    finally:
        d.stop()


def _wait_for(predicate: object, seconds: float = HANG_GUARD) -> None:
    deadline = systime.monotonic() + seconds
    while systime.monotonic() < deadline:
        if predicate():  # type: ignore[operator]
            return
        systime.sleep(0.05)
    raise AssertionError("timed out")


def _ledger(engine: sa.Engine) -> list[tuple[str, str, str, bool]]:
    with engine.connect() as conn:
        return [(r.account, str(r.snapshot_date), r.status, bool(r.final)) for r in conn.execute(
            sa.text("SELECT * FROM snapshots ORDER BY snapshot_date, account, id"))]


def test_job_fires_at_scheduled_time(world: tuple[Config, sa.Engine, KiteSimulator,
                                                  list[SimAccount]], clock: ManualClock) -> None:
    config, engine, _sim, accounts = world
    d = Daemon(config, engine, clock=clock)
    with running(d, catch_up=False):
        assert d.next_run() == _ist("2026-11-27T16:30")
        job = d.scheduler.get_job("snapshot")
        assert (job.max_instances, job.coalesce) == (1, True)
        assert job.misfire_grace_time >= 3600  # APScheduler's default of 1 s drops late runs
        assert str(d.scheduler.timezone) == "Asia/Kolkata"
        systime.sleep(0.3)
        assert d.runs == [] and _ledger(engine) == []
        clock.set("2026-11-27T16:30:02")
        d.scheduler.wakeup()
        _wait_for(lambda: len(d.runs) == 1)
        assert _ledger(engine) == [(a.user_id, "2026-11-27", "ok", True) for a in accounts]
        assert d.next_run() == _ist("2026-11-30T16:30")


def test_catch_up_after_a_missed_day(world: tuple[Config, sa.Engine, KiteSimulator,
                                                  list[SimAccount]], clock: ManualClock) -> None:
    config, engine, sim, accounts = world
    clock.set("2026-11-26T17:00")  # Thursday's run happened
    pipeline.run_snapshot(config, engine, clock=clock)
    # The daemon was down all Friday; it starts on Saturday morning.
    clock.set("2026-11-28T10:00")
    d = Daemon(config, engine, clock=clock)
    with running(d):
        _wait_for(lambda: len(d.runs) == 1)
        assert d.next_run() == _ist("2026-11-30T16:30")
    ledger = _ledger(engine)
    assert [r for r in ledger if r[1] == "2026-11-27"] == [
        (a.user_id, "2026-11-27", "ok", True) for a in accounts]

    # A restart the same day finds nothing to do and does not contact Kite.
    requests_before = len(sim.requests_log)
    again = Daemon(config, engine, clock=clock)
    with running(again):
        _wait_for(lambda: len(again.runs) == 1)
    assert {o.status for o in again.runs[0].outcomes} == {"skipped"}
    assert len(sim.requests_log) == requests_before
    assert _ledger(engine) == ledger


def test_catch_up_during_session_keeps_a_complete_intraday_snapshot(
        world: tuple[Config, sa.Engine, KiteSimulator, list[SimAccount]],
        clock: ManualClock) -> None:
    config, engine, _sim, accounts = world
    clock.set("2026-11-27T11:00")
    pipeline.run_snapshot(config, engine, clock=clock, accounts=[accounts[0].user_id])
    clock.set("2026-11-27T12:00")
    d = Daemon(config, engine, clock=clock)
    with running(d):
        _wait_for(lambda: len(d.runs) == 1)
        status = {o.account: o.status for o in d.runs[0].outcomes}
        assert status == {accounts[0].user_id: "skipped", accounts[1].user_id: "ok"}
        # At the scheduled time both get their final snapshot.
        clock.set("2026-11-27T16:30:01")
        d.scheduler.wakeup()
        _wait_for(lambda: len(d.runs) == 2)
    ok = [r for r in _ledger(engine) if r[2] == "ok"]
    assert ok == [(a.user_id, "2026-11-27", "ok", True) for a in accounts]


def test_transient_failure_retried_later_rejected_login_not(
        world: tuple[Config, sa.Engine, KiteSimulator, list[SimAccount]], clock: ManualClock,
        tmp_path: Path, database_url: str) -> None:
    _, engine, sim, accounts = world
    data = config_dict(sim, accounts, database_url, tmp_path / "state")
    data["kite"]["retries"] = 0
    data["accounts"][1]["password"] = "wrong-password"
    config = parse_config(data)
    sim.fail_next(1, "503", "/oms/user/margins")
    clock.set("2026-11-27T16:30:01")
    d = Daemon(config, engine, clock=clock)
    with running(d, catch_up=False):
        d.take_due()
        first = {o.account: o for o in d.runs[0].outcomes}
        assert first[accounts[0].user_id].transient
        assert first[accounts[1].user_id].rejected
        retry = d.scheduler.get_job(f"retry-2026-11-27-1-{accounts[0].user_id}")
        assert retry is not None and retry.kwargs["accounts"] == [accounts[0].user_id]
        assert retry.next_run_time == _ist("2026-11-27T17:00:01")
        clock.set("2026-11-27T17:00:05")
        d.scheduler.wakeup()
        _wait_for(lambda: len(d.runs) == 2)
    assert [(o.account, o.status) for o in d.runs[1].outcomes] == [
        (accounts[0].user_id, "ok")]
    assert len([p for _, p, u in sim.requests_log
                if p == "/api/login" and u == accounts[1].user_id]) == 1


def test_wake_from_sleep_catches_up(world: tuple[Config, sa.Engine, KiteSimulator,
                                                 list[SimAccount]], clock: ManualClock) -> None:
    config, engine, _sim, accounts = world
    clock.set("2026-11-27T10:00")
    d = Daemon(config, engine, clock=clock)
    with running(d, catch_up=False):
        d.heartbeat()
        clock.set("2026-11-28T09:00")  # the laptop slept through Friday's run
        d.heartbeat()  # schedules the catch-up as its own job and returns at once
        assert d.scheduler.get_job("wake") is not None or d.runs
        _wait_for(lambda: len(d.runs) == 1)
    assert [r for r in _ledger(engine)] == [
        (a.user_id, "2026-11-27", "ok", True) for a in accounts]


def test_daemon_started_as_a_process_and_stopped_by_sigterm_mid_run(
        tmp_path: Path, database_url: str) -> None:
    """SIGTERM during a run: exits 0, and every stored snapshot is whole."""
    accounts = demo_accounts(4, seed=5)
    with KiteSimulator(accounts, latency=0.4) as sim:
        data = config_dict(sim, accounts, database_url, tmp_path / "state")
        data["kite"]["concurrency"] = 1
        cfg = write_config(tmp_path / "config.yaml", data)
        notify = tmp_path / "notify.sock"
        import socket

        listener = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        listener.bind(str(notify))
        proc = subprocess.Popen(
            [sys.executable, "-m", "snapshotter", "--config", str(cfg), "daemon"],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
            env={**os.environ, "NOTIFY_SOCKET": str(notify)})
        try:
            listener.settimeout(30)
            assert listener.recv(100) == b"READY=1"
            _wait_for(lambda: any(p == "/api/twofa" for _, p, _ in sim.requests_log), 30)
            proc.send_signal(signal.SIGTERM)
            _out, err = proc.communicate(timeout=60)
        finally:
            if proc.poll() is None:
                proc.kill()
            listener.close()
    assert proc.returncode == 0, err
    assert "received SIGTERM" in err and "Traceback" not in err
    engine = sa.create_engine(database_url)
    with engine.connect() as conn:
        ledger = conn.execute(sa.text("SELECT * FROM snapshots")).mappings().all()
        assert 1 <= len(ledger) < 4  # the account in flight finished; the rest abandoned
        assert {r["status"] for r in ledger} == {"ok"}
        for table, count_column in COUNT_COLUMNS.items():
            stored = dict(conn.execute(sa.text(
                f"SELECT snapshot_id, COUNT(*) FROM {table} GROUP BY snapshot_id")).all())
            for r in ledger:
                assert stored.get(r["id"], 0) == r[count_column]
            orphans = conn.execute(sa.text(
                f"SELECT COUNT(*) FROM {table} WHERE snapshot_id NOT IN "
                "(SELECT id FROM snapshots WHERE status = 'ok')")).scalar()
            assert orphans == 0
    engine.dispose()
