"""`snapshotter status`: last complete snapshot, last failure and next run per account."""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
import sqlalchemy as sa
from sqlalchemy.orm import Session as OrmSession

from snapshotter import pipeline
from snapshotter.config import Config, parse_config
from snapshotter.ops import status
from snapshotter.sessions import ManualClock, library_horizon
from snapshotter.simulator import KiteSimulator, SimAccount, demo_accounts
from snapshotter.store import engine as db
from snapshotter.store import migrate
from snapshotter.store.models import Snapshot
from tests.conftest import ShiftedClock, _offset_to, config_dict, run_cli, write_config

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
    # Final snapshots: the next session's run; the rejected login: not tried again.
    assert rows[good].next_run == rows[other].next_run == status.NextRun(
        ist("2026-11-27T16:30:00"))
    assert rows[bad].next_run.at is None and "rejected" in rows[bad].next_run.note
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
    assert [a.next_run.at for a in opened.accounts] == [ist("2026-11-27T16:30:00"), None,
                                                         ist("2026-11-27T16:30:00")]

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
    assert text.splitlines()[0] == "latest session: 2026-11-27"
    lines = {line.split()[0]: line for line in text.splitlines()[1:] if line.strip()}
    cells = {user: re.split(r"\s{2,}", line.strip()) for user, line in lines.items()}
    assert cells["account"][-2:] == ["has latest session", "next run"]
    assert "2026-11-27 (intraday, 2026-11-27 09:20 IST)" in lines[good]
    assert cells[good][-2:] == ["yes", "2026-11-27 16:30 IST"]
    assert "2026-11-26 (final, 2026-11-26 17:00 IST)" in lines[other]
    assert cells[other][-2:] == ["NO", "2026-11-27 16:30 IST"]
    assert "never" in lines[bad] and f"2026-11-26: account {bad}" in lines[bad]
    assert cells[bad][-2:] == ["NO", "none (login rejected)"]
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


def _ledger_row(engine: sa.Engine, account: str, day: str, taken_at: datetime, *,
               final: bool = True, failed: bool = False, warnings: str | None = None) -> None:
    """A ledger row as a run writes it (the status reads only the ledger)."""
    with OrmSession(engine) as session, session.begin():
        session.add(Snapshot(account=account, snapshot_date=date.fromisoformat(day),
                             taken_at=taken_at, status="failed" if failed else "ok",
                             final=final and not failed, error="HTTP 503" if failed else None,
                             warnings=warnings))


@pytest.mark.parametrize(("now", "latest", "if_final", "if_lacking"), [
    ("2026-11-27T12:00:00", "2026-11-27", None, "2026-11-27T16:30"),  # Friday, open
    ("2026-11-27T08:00:00", "2026-11-26", "2026-11-27T16:30", None),  # before the open
    ("2026-11-27T16:30:00", "2026-11-27", "2026-11-30T16:30", "2026-11-27T16:30"),  # due now
    ("2026-11-27T17:00:00", "2026-11-27", "2026-11-30T16:30", None),  # Friday evening
    ("2026-11-28T10:00:00", "2026-11-27", "2026-11-30T16:30", None),  # Saturday -> Monday
    ("2026-11-29T23:59:00", "2026-11-27", "2026-11-30T16:30", None),  # Sunday night
    ("2026-11-23T12:00:00", "2026-11-23", None, "2026-11-23T16:30"),  # before the holiday
    ("2026-11-23T17:00:00", "2026-11-23", "2026-11-25T16:30", None),  # skips 2026-11-24
    ("2026-11-24T12:00:00", "2026-11-23", "2026-11-25T16:30", None),  # on the holiday
])
def test_next_run_per_account(database_url: str, engine: sa.Engine, now: str, latest: str,
                              if_final: str | None, if_lacking: str | None) -> None:
    """An account with a final snapshot of the latest session: the next session's run;
    one without: that session's run while it is ahead, else overdue since it."""
    config = parse_config({"database": {"url": database_url}, "accounts": [
        {"user_id": user, "password": "x", "totp_secret": TOTP} for user in ("AB1", "AB2")]})
    if if_final:  # AB1 took the latest session after it settled (16:00)
        _ledger_row(engine, "AB1", latest, ist(f"{latest}T16:10:00"))
    for when in (ist(now), ist(now).astimezone(UTC)):  # any time zone in, IST out
        report = status.build_status(config, engine, when)
        assert report.latest_session.isoformat() == latest
        assert report.warning is None
        rows = _by_account(report)
        lacking = rows["AB2"].next_run
        if if_lacking:
            assert lacking == status.NextRun(ist(if_lacking))
        else:  # the latest session's run has passed: due at once
            assert lacking == status.NextRun(ist(f"{latest}T16:30"), "overdue", overdue=True)
        text = status.render(report)
        line = next(li for li in text.splitlines() if li.startswith("AB2 "))
        assert line.rstrip().endswith(f"{'' if if_lacking else 'overdue since '}"
                             f"{(ist(if_lacking or latest + 'T16:30')):%Y-%m-%d %H:%M} IST")
        assert (f"warning: account AB2: the run due {latest} 16:30 IST left no final "
                f"snapshot of session {latest}" in text) == (if_lacking is None)
        if if_final:
            assert rows["AB1"].next_run == status.NextRun(ist(if_final))
            assert rows["AB1"].has_latest and not report.healthy  # AB2 lacks it


def test_next_run_follows_schedule_time(database_url: str, engine: sa.Engine) -> None:
    config = parse_config({
        "database": {"url": database_url}, "schedule": {"time": "18:45"},
        "accounts": [{"user_id": "AB1234", "password": "x", "totp_secret": TOTP}],
    })
    report = status.build_status(config, engine, ist("2026-11-27T17:00:00"))
    assert report.accounts[0].next_run.at == ist("2026-11-27T18:45:00")
    _ledger_row(engine, "AB1234", "2026-11-27", ist("2026-11-27T16:45:00"))
    report = status.build_status(config, engine, ist("2026-11-27T17:00:00"))
    assert report.accounts[0].next_run.at == ist("2026-11-30T18:45:00")


def test_next_run_after_a_failed_scheduled_run(database_url: str, engine: sa.Engine) -> None:
    """The daemon retries retry_attempts times, retry_spacing_minutes apart (a warned
    snapshot: WARNING_CONFIRM_AFTER at least), then waits for the next session."""
    config = parse_config({
        "database": {"url": database_url},
        "schedule": {"retry_attempts": 2, "retry_spacing_minutes": 20},
        "accounts": [{"user_id": u, "password": "x", "totp_secret": TOTP}
                     for u in ("AB1", "AB2")]})
    _ledger_row(engine, "AB1", "2026-11-27", ist("2026-11-27T16:00:00"), failed=True)
    _ledger_row(engine, "AB1", "2026-11-27", ist("2026-11-27T16:31:00"), failed=True)
    _ledger_row(engine, "AB2", "2026-11-27", ist("2026-11-27T16:31:00"), final=False,
                warnings="account AB2: holdings: a warning")

    def next_runs(now: str) -> dict[str, status.NextRun]:
        report = status.build_status(config, engine, ist(now))
        return {a.account: a.next_run for a in report.accounts}

    # One attempt since the 16:30 run (the 16:00 one was before it).
    assert next_runs("2026-11-27T16:40:00") == {
        "AB1": status.NextRun(ist("2026-11-27T16:51:00"), "retry 1 of 2"),
        "AB2": status.NextRun(ist("2026-11-27T17:01:00"), "retry 1 of 2")}
    # The retry's time has passed without it (no daemon): overdue.
    overdue = status.NextRun(ist("2026-11-27T16:30:00"), "overdue", overdue=True)
    assert next_runs("2026-11-27T17:05:00") == {"AB1": overdue, "AB2": overdue}
    _ledger_row(engine, "AB1", "2026-11-27", ist("2026-11-27T16:51:00"), failed=True)
    assert next_runs("2026-11-27T16:55:00")["AB1"] == status.NextRun(
        ist("2026-11-27T17:11:00"), "retry 2 of 2")
    _ledger_row(engine, "AB1", "2026-11-27", ist("2026-11-27T17:11:00"), failed=True)
    gave_up = status.NextRun(ist("2026-11-30T16:30:00"),
                             "gave up on 2026-11-27 after 2 retries")
    assert next_runs("2026-11-27T17:15:00")["AB1"] == gave_up
    report = status.build_status(config, engine, ist("2026-11-27T17:15:00"))
    assert "2026-11-30 16:30 IST (gave up on 2026-11-27 after 2 retries)" in status.render(
        report)


@pytest.mark.parametrize(("now", "latest", "next_run"), [
    ("2027-01-05T12:00:00", "2027-01-05", "2027-01-05T16:30:00"),
    ("2027-01-09T12:00:00", "2027-01-08", "2027-01-11T16:30:00"),  # Saturday, past horizon
    ("2026-12-31T17:00:00", "2026-12-31", "2027-01-01T16:30:00"),  # next run past it
])
def test_horizon_warning_for_2027(quiet_config: Config, engine: sa.Engine, now: str,
                                  latest: str, next_run: str) -> None:
    assert library_horizon().isoformat() == "2026-12-31", "update these dates"
    if ist(now) > ist(f"{latest}T16:10:00"):  # a final snapshot of the latest session
        _ledger_row(engine, "AB1234", latest, ist(f"{latest}T16:10:00"))
    report = status.build_status(quiet_config, engine, ist(now))
    assert report.latest_session.isoformat() == latest
    assert report.accounts[0].next_run.at == ist(next_run)
    assert report.warning is not None and "2026-12-31" in report.warning
    text = status.render(report)
    assert f"warning: {report.warning}" in text
    assert "calendar.holidays" in text


# -- the command -----------------------------------------------------------------------


def _cells(stdout: str, accounts: list[str]) -> dict[str, list[str]]:
    """Each account's row of the status table, split into its cells."""
    rows = {}
    for line in stdout.splitlines():
        word = line.split(maxsplit=1)[0] if line.strip() else ""
        if word in accounts:
            rows[word] = re.split(r"\s{2,}", line.strip())
    assert set(rows) == set(accounts), stdout
    return rows


def test_status_command_shows_each_accounts_next_run(
        faketime_lib: str, database_url: str, tmp_path: Path) -> None:
    """Friday 2026-11-27, `schedule.time` 17:00: the account with a final snapshot waits
    for Monday's run; the others for today's, then for the daemon's retry, or are overdue;
    the rejected login for none."""
    accounts = demo_accounts(4, seed=31)
    good, flaky, never, bad = (a.user_id for a in accounts)
    clock = ShiftedClock(0)

    def at(ist_time: str) -> dict[str, str]:
        offset = _offset_to(ist(f"2026-11-27T{ist_time}:00"))
        clock.offset = offset
        return {"LD_PRELOAD": faketime_lib, "FAKETIME": f"{offset:+d}",
                "FAKETIME_DONT_FAKE_MONOTONIC": "0"}

    with KiteSimulator(accounts, clock=clock) as sim:
        data = config_dict(sim, accounts, database_url, tmp_path / "state",
                           schedule={"time": "17:00"})
        data["accounts"][3]["password"] = WRONG_PASSWORD
        cfg = write_config(tmp_path / "config.yaml", data)
        good_cfg = write_config(tmp_path / "good.yaml", {**data,
                                                         "accounts": data["accounts"][:1]})
        every = [good, flaky, never, bad]
        attempts = 1 + parse_config(data).kite.retries  # every attempt of one run fails

        # status never creates a database (tests/test_cli_conventions.py): make an empty one
        assert run_cli("--config", str(cfg), "db", "upgrade").returncode == 0
        empty = run_cli("--config", str(cfg), "status", env=at("16:35"))
        assert empty.returncode == 1, empty.stdout + empty.stderr
        for cells in _cells(empty.stdout, every).values():
            assert cells[1:] == ["never", "-", "NO", "2026-11-27 17:00 IST"], empty.stdout

        # 16:40, before the 17:00 run: a run of three accounts, one failing at Kite.
        sim.fail_next(attempts, "503", "/oms/portfolio/holdings",
                      user_id=flaky)
        first = run_cli("--config", str(cfg), "run", "--account", good, "--account", flaky,
                        "--account", bad, env=at("16:40"))
        assert first.returncode == 78, first.stdout + first.stderr
        before = run_cli("--config", str(cfg), "status", env=at("16:50"))
        assert before.returncode == 1, before.stdout + before.stderr
        cells = _cells(before.stdout, every)
        assert cells[good][-2:] == ["yes", "2026-11-30 17:00 IST"]  # Monday's run
        assert cells[flaky][-2:] == ["NO", "2026-11-27 17:00 IST"]  # today's run
        assert cells[never][-2:] == ["NO", "2026-11-27 17:00 IST"]
        assert cells[bad][-2:] == ["NO", "none (login rejected)"]
        assert before.stdout.splitlines()[0] == "latest session: 2026-11-27"
        assert "next scheduled run" not in before.stdout and "overdue" not in before.stdout

        # The 17:00 run fails that account again: the daemon retries it 30 minutes on;
        # the account no run took is overdue.
        sim.fail_next(attempts, "503", "/oms/portfolio/holdings",
                      user_id=flaky)
        again = run_cli("--config", str(cfg), "run", "--account", flaky, env=at("17:00"))
        assert again.returncode == 1, again.stdout + again.stderr
        after = run_cli("--config", str(cfg), "status", env=at("17:10"))
        assert after.returncode == 1, after.stdout + after.stderr
        cells = _cells(after.stdout, every)
        assert cells[good][-1] == "2026-11-30 17:00 IST"
        assert cells[flaky][-1].startswith("2026-11-27 17:30 IST (retry 1 of 3)"), after.stdout
        assert cells[never][-1] == "overdue since 2026-11-27 17:00 IST"
        assert (f"warning: account {never}: the run due 2026-11-27 17:00 IST left no final "
                "snapshot of session 2026-11-27: the daemon catches up when it starts; "
                "`snapshotter run` takes it now") in after.stdout.splitlines()
        assert WRONG_PASSWORD not in after.stdout + after.stderr

        healthy = run_cli("--config", str(good_cfg), "status", env=at("17:10"))
        assert healthy.returncode == 0, healthy.stdout + healthy.stderr
        assert _cells(healthy.stdout, [good])[good][-2:] == ["yes", "2026-11-30 17:00 IST"]
