"""`snapshotter status`: last complete snapshot, last failure and next run per account."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
import sqlalchemy as sa

from snapshotter import pipeline
from snapshotter.config import Config, parse_config
from snapshotter.ops import status
from snapshotter.sessions import ManualClock, TradingCalendar, library_horizon, utc_now
from snapshotter.simulator import KiteSimulator, SimAccount
from snapshotter.store import engine as db
from snapshotter.store import migrate
from tests.conftest import config_dict, run_cli, write_config

IST = ZoneInfo("Asia/Kolkata")
TOTP = "JBSWY3DPEHPK3PXPJBSWY3DP"
WRONG_PASSWORD = "not-the-password-9f3a"


def ist(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=IST)



@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(ist("2026-11-26T17:00:00"))  # Thursday, after the close


@pytest.fixture
def clocked_sim(sim_accounts: list[SimAccount], clock: ManualClock) -> Iterator[KiteSimulator]:
    with KiteSimulator(sim_accounts, clock=clock) as server:
        yield server


@pytest.fixture
def engine(database_url: str) -> Iterator[sa.Engine]:
    engine = db.make_engine(database_url)
    migrate.upgrade(database_url, engine)
    yield engine
    engine.dispose()


def _config(sim: KiteSimulator, accounts: list[SimAccount], database_url: str,
            tmp_path: Path, bad: str | None = None, **extra: Any) -> Config:
    data = config_dict(sim, accounts, database_url, tmp_path / "state", **extra)
    for acc in data["accounts"]:
        if acc["user_id"] == bad:
            acc["password"] = WRONG_PASSWORD
    return parse_config(data)


def _by_account(report: status.StatusReport) -> dict[str, status.AccountStatus]:
    return {a.account: a for a in report.accounts}


def test_status_from_history(clocked_sim: KiteSimulator, sim_accounts: list[SimAccount],
                             database_url: str, engine: sa.Engine, clock: ManualClock,
                             tmp_path: Path) -> None:
    good, bad, other = (a.user_id for a in sim_accounts)
    config = _config(clocked_sim, sim_accounts, database_url, tmp_path, bad=bad)

    # Thursday after the close: final snapshots, except the account Kite refuses.
    thursday = pipeline.run_snapshot(config, engine, clock=clock)
    assert {o.account: o.status for o in thursday.outcomes} == {
        good: "ok", bad: "failed", other: "ok"}

    report = status.build_status(config, engine, ist("2026-11-26T18:00:00"))
    rows = _by_account(report)
    assert report.latest_session.isoformat() == "2026-11-26"
    assert report.next_run == ist("2026-11-27T16:30:00")
    assert not report.healthy
    assert rows[good].has_latest and rows[other].has_latest and not rows[bad].has_latest
    first = rows[good].last_complete
    assert first is not None and first.final
    assert first.snapshot_date.isoformat() == "2026-11-26"
    assert first.taken_at == ist("2026-11-26T17:00:00")
    assert rows[good].last_failure is None
    assert rows[bad].last_complete is None
    failure = rows[bad].last_failure
    assert failure is not None and failure.snapshot_date.isoformat() == "2026-11-26"
    assert bad in (failure.error or "") and "password" in (failure.error or "").lower()

    # Friday before the open: Thursday is still the latest session.
    early = status.build_status(config, engine, ist("2026-11-27T09:00:00"))
    assert early.latest_session.isoformat() == "2026-11-26"
    assert [a.has_latest for a in early.accounts] == [True, False, True]

    # Friday once the session has opened: nobody has it yet.
    opened = status.build_status(config, engine, ist("2026-11-27T09:20:00"))
    assert opened.latest_session.isoformat() == "2026-11-27"
    assert not any(a.has_latest for a in opened.accounts)
    assert opened.next_run == ist("2026-11-27T16:30:00")

    # An intraday snapshot, however early, counts as having the session.
    clock.set("2026-11-27T09:20:00")
    pipeline.run_snapshot(config, engine, clock=clock, accounts=[good])
    intraday = status.build_status(config, engine, ist("2026-11-27T12:00:00"))
    rows = _by_account(intraday)
    assert rows[good].has_latest and not rows[other].has_latest and not rows[bad].has_latest
    snap = rows[good].last_complete
    assert snap is not None and not snap.final
    assert snap.snapshot_date.isoformat() == "2026-11-27"
    assert not intraday.healthy

    # The healthy accounts alone are healthy once all have the session.
    pipeline.run_snapshot(config, engine, clock=clock, accounts=[other])
    without_bad = parse_config(config_dict(clocked_sim, [sim_accounts[0], sim_accounts[2]],
                                           database_url, tmp_path / "state"))
    healthy = status.build_status(without_bad, engine, ist("2026-11-27T12:00:00"))
    assert healthy.healthy and healthy.warning is None

    text = status.render(intraday)
    assert "latest session: 2026-11-27; next scheduled run: 2026-11-27 16:30 IST" in text
    lines = {line.split()[0]: line for line in text.splitlines()[1:] if line.strip()}
    assert "2026-11-27 (intraday, 2026-11-27 09:20 IST)" in lines[good]
    assert lines[good].rstrip().endswith("yes")
    assert "2026-11-26 (final, 2026-11-26 17:00 IST)" in lines[other]
    assert lines[other].rstrip().endswith("NO")
    assert "never" in lines[bad] and f"2026-11-26: account {bad}" in lines[bad]
    assert lines[bad].rstrip().endswith("NO")
    assert WRONG_PASSWORD not in text
    assert "warning" not in text


def test_latest_failure_and_latest_complete_are_the_newest(
        clocked_sim: KiteSimulator, sim_accounts: list[SimAccount], database_url: str,
        engine: sa.Engine, clock: ManualClock, tmp_path: Path) -> None:
    user = sim_accounts[0].user_id
    config = _config(clocked_sim, sim_accounts[:1], database_url, tmp_path)
    pipeline.run_snapshot(config, engine, clock=clock)  # Thursday: final
    clock.set("2026-11-27T10:00:00")
    # Every attempt of this run fails (the first and each retry), then Kite recovers.
    clocked_sim.fail_next(1 + config.kite.retries, "503", "/oms/portfolio/holdings")
    failed = pipeline.run_snapshot(config, engine, clock=clock)
    assert [o.status for o in failed.outcomes] == ["failed"]

    report = status.build_status(config, engine, ist("2026-11-27T10:30:00"))
    [row] = report.accounts
    assert row.last_complete is not None
    assert row.last_complete.snapshot_date.isoformat() == "2026-11-26"
    assert row.last_failure is not None
    assert row.last_failure.snapshot_date.isoformat() == "2026-11-27"
    assert row.last_failure.taken_at == ist("2026-11-27T10:00:00")
    assert not report.healthy
    assert "2026-11-27: account" in status.render(report)

    clock.set("2026-11-27T11:00:00")
    retried = pipeline.run_snapshot(config, engine, clock=clock)
    assert [o.status for o in retried.outcomes] == ["ok"]
    report = status.build_status(config, engine, ist("2026-11-27T11:30:00"))
    [row] = report.accounts
    assert row.account == user and row.has_latest and report.healthy
    assert row.last_complete is not None and row.last_complete.taken_at == ist(
        "2026-11-27T11:00:00")
    assert row.last_failure is not None  # still shown: the last failure, now history


@pytest.fixture
def quiet_config(database_url: str) -> Config:
    """A config whose accounts are never contacted (only the ledger is read)."""
    return parse_config({
        "database": {"url": database_url},
        "accounts": [{"user_id": "AB1234", "password": "x", "totp_secret": TOTP}],
    })


@pytest.mark.parametrize(("now", "latest", "next_run"), [
    ("2026-11-27T12:00:00", "2026-11-27", "2026-11-27T16:30:00"),  # Friday, open
    ("2026-11-27T08:00:00", "2026-11-26", "2026-11-27T16:30:00"),  # Friday, before the open
    ("2026-11-27T16:30:00", "2026-11-27", "2026-11-27T16:30:00"),  # the run is due now
    ("2026-11-27T17:00:00", "2026-11-27", "2026-11-30T16:30:00"),  # Friday evening
    ("2026-11-28T10:00:00", "2026-11-27", "2026-11-30T16:30:00"),  # Saturday -> Monday
    ("2026-11-29T23:59:00", "2026-11-27", "2026-11-30T16:30:00"),  # Sunday night
    ("2026-11-23T12:00:00", "2026-11-23", "2026-11-23T16:30:00"),  # day before the holiday
    ("2026-11-23T17:00:00", "2026-11-23", "2026-11-25T16:30:00"),  # skips 2026-11-24
    ("2026-11-24T12:00:00", "2026-11-23", "2026-11-25T16:30:00"),  # on the holiday
])
def test_next_run_is_the_next_session_at_1630_ist(quiet_config: Config, engine: sa.Engine,
                                                  now: str, latest: str,
                                                  next_run: str) -> None:
    for when in (ist(now), ist(now).astimezone(UTC)):  # any time zone in, IST out
        report = status.build_status(quiet_config, engine, when)
        assert report.latest_session.isoformat() == latest
        assert report.next_run == ist(next_run)
        assert report.warning is None
        assert not report.healthy  # an empty ledger
        shown = ist(next_run).strftime("%Y-%m-%d %H:%M IST")
        assert f"next scheduled run: {shown}" in status.render(report)


def test_next_run_follows_schedule_time(database_url: str, engine: sa.Engine) -> None:
    config = parse_config({
        "database": {"url": database_url}, "schedule": {"time": "18:45"},
        "accounts": [{"user_id": "AB1234", "password": "x", "totp_secret": TOTP}],
    })
    report = status.build_status(config, engine, ist("2026-11-27T17:00:00"))
    assert report.next_run == ist("2026-11-27T18:45:00")


@pytest.mark.parametrize(("now", "latest", "next_run"), [
    ("2027-01-05T12:00:00", "2027-01-05", "2027-01-05T16:30:00"),
    ("2027-01-09T12:00:00", "2027-01-08", "2027-01-11T16:30:00"),  # Saturday, past horizon
    ("2026-12-31T17:00:00", "2026-12-31", "2027-01-01T16:30:00"),  # next run past it
])
def test_horizon_warning_for_2027(quiet_config: Config, engine: sa.Engine, now: str,
                                  latest: str, next_run: str) -> None:
    assert library_horizon().isoformat() == "2026-12-31", "update these dates"
    report = status.build_status(quiet_config, engine, ist(now))
    assert report.latest_session.isoformat() == latest
    assert report.next_run == ist(next_run)
    assert report.warning is not None and "2026-12-31" in report.warning
    text = status.render(report)
    assert f"warning: {report.warning}" in text
    assert "calendar.holidays" in text


# -- the command -----------------------------------------------------------------------


def _table_rows(stdout: str, accounts: list[SimAccount]) -> dict[str, str]:
    rows = {}
    for line in stdout.splitlines():
        word = line.split(maxsplit=1)[0] if line.strip() else ""
        if word in {a.user_id for a in accounts}:
            rows[word] = line
    assert set(rows) == {a.user_id for a in accounts}, stdout
    return rows


def test_status_command(sim: KiteSimulator, sim_accounts: list[SimAccount],
                        database_url: str, tmp_path: Path) -> None:
    data = config_dict(sim, sim_accounts, database_url, tmp_path / "state")
    bad = sim_accounts[1].user_id
    data["accounts"][1]["password"] = WRONG_PASSWORD
    cfg = write_config(tmp_path / "config.yaml", data)
    good_cfg = write_config(tmp_path / "good.yaml", {
        **data, "accounts": [a for a in data["accounts"] if a["user_id"] != bad]})

    # status never creates a database (tests/test_cli_conventions.py): make an empty one
    assert run_cli("--config", str(cfg), "db", "upgrade").returncode == 0
    empty = run_cli("--config", str(cfg), "status")
    assert empty.returncode == 1, empty.stdout + empty.stderr
    assert "Traceback" not in empty.stderr
    assert "next scheduled run: " in empty.stdout and "IST" in empty.stdout
    for line in _table_rows(empty.stdout, sim_accounts).values():
        assert "never" in line and line.rstrip().endswith("NO")

    calendar = TradingCalendar()
    session = calendar.latest_opened(utc_now()).day
    run = run_cli("--config", str(cfg), "run")
    assert run.returncode == 78, run.stdout + run.stderr

    after = run_cli("--config", str(cfg), "status")
    healthy = run_cli("--config", str(good_cfg), "status")
    if calendar.latest_opened(utc_now()).day != session:
        pytest.skip("a session opened during the test")
    assert after.returncode == 1, after.stdout + after.stderr
    assert f"latest session: {session}" in after.stdout, after.stdout
    rows = _table_rows(after.stdout, sim_accounts)
    for acc in sim_accounts:
        line = rows[acc.user_id]
        if acc.user_id == bad:
            assert "never" in line and f"{session}: account {bad}" in line, after.stdout
            assert line.rstrip().endswith("NO"), after.stdout
        else:
            assert f"{session} (" in line and line.rstrip().endswith("yes"), after.stdout
            assert " - " in line, after.stdout  # no failure
    assert WRONG_PASSWORD not in after.stdout + after.stderr

    assert healthy.returncode == 0, healthy.stdout + healthy.stderr
    assert "NO" not in healthy.stdout, healthy.stdout
