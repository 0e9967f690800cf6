"""The daemon's login check (an hour before the close) and `schedule.login_reminder`: one
message listing the manual accounts without a session for the day, each with a Kite Connect
app carrying its dashboard login link; an injected clock, Apprise to a local receiver."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, time
from pathlib import Path
from typing import Any

import pytest

from snapshotter.config import Config, parse_config
from snapshotter.config.model import ServeConfig
from snapshotter.ops import notify
from snapshotter.ops.daemon import Daemon, ReminderTrigger
from snapshotter.sessions import IST, ManualClock, TradingCalendar
from snapshotter.store import engine as db
from tests.conftest import LOCAL_ONLY, Recorder, scheduler_clock, wait_until

TOKEN = "Rem1nderTok3n9"  # stands for the token an Apprise URL carries
TOTP = "JBSWY3DPEHPK3PXPJBSWY3DP"


def _ist(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=IST)


@pytest.fixture(autouse=True)
def _local_only(monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in LOCAL_ONLY.items():
        monkeypatch.setenv(name, value)


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> ManualClock:
    """One injected clock for our code and for APScheduler's notion of now."""
    return scheduler_clock(monkeypatch, _ist("2026-11-27T08:59:00"))


def _config(tmp_path: Path, recorder: Recorder, **schedule: Any) -> Config:
    return parse_config({
        "database": {"url": f"sqlite:///{tmp_path / 'snapshots.db'}"},
        "kite": {"base_url": "http://127.0.0.1:9", "api_root": "http://127.0.0.1:9"},
        "state_dir": str(tmp_path / "state"),
        "schedule": schedule,
        "notify": {"urls": [recorder.base_url.replace("http://", "json://")
                            + f"/notify/{TOKEN}"]},
        "serve": {"url": "https://dash.example.org/"},
        "accounts": [
            {"user_id": "DM0001", "auth": "manual", "api_key": "app1key",
             "api_secret": "AppSecretNumberOne"},
            {"user_id": "DM0002", "auth": "manual"},
            {"user_id": "DM0003", "password": "Pw0rdPw0rd", "totp_secret": TOTP},
        ],
    })


@contextmanager
def _running(config: Config, clock: ManualClock) -> Iterator[Daemon]:
    engine = db.make_engine(config.database_url)
    daemon = Daemon(config, engine, clock=clock)
    daemon.start(catch_up=False)
    try:
        yield daemon
    finally:
        daemon.stop()
        engine.dispose()


def _fire(daemon: Daemon, clock: ManualClock, at: str) -> None:
    clock.set(at)
    daemon.scheduler.wakeup()


def _messages(recorder: Recorder) -> list[dict[str, Any]]:
    return [json.loads(body) for _, _, body in recorder.requests]


def test_login_reminder_lists_accounts_without_a_session_with_their_login_link(
        tmp_path: Path, recorder: Recorder, clock: ManualClock) -> None:
    config = _config(tmp_path, recorder, login_reminder="09:00")
    with _running(config, clock) as daemon:
        job = daemon.scheduler.get_job("login-reminder")
        assert job.next_run_time == _ist("2026-11-27T09:00")
        _fire(daemon, clock, "2026-11-27T09:00:01")
        wait_until(lambda: recorder.requests, "the reminder")
        [message] = _messages(recorder)
        assert message["title"] == \
            "snapshotter: 2 accounts without a working session (login reminder)"
        assert message["message"].splitlines() == [
            "DM0001: no valid session: run `snapshotter login --account DM0001`",
            "log in to Kite: https://dash.example.org/kite/login/DM0001",
            "DM0002: no valid session: run `snapshotter login --account DM0002`",
        ]  # DM0002 has no Kite Connect app (no link); DM0003 logs in by itself
        assert daemon.scheduler.get_job("login-reminder").next_run_time == \
            _ist("2026-11-30T09:00")  # the next session: Monday
    said = json.dumps(_messages(recorder))
    assert "AppSecretNumberOne" not in said and TOKEN not in said


def test_the_check_before_the_close_carries_the_link_and_the_reminder_is_off_by_default(
        tmp_path: Path, recorder: Recorder, clock: ManualClock) -> None:
    config = parse_config(_raw_without_serve_url(tmp_path, recorder))
    with _running(config, clock) as daemon:
        assert daemon.scheduler.get_job("login-reminder") is None
        assert daemon.scheduler.get_job("login-check").next_run_time == \
            _ist("2026-11-27T14:30")
        _fire(daemon, clock, "2026-11-27T14:30:01")
        wait_until(lambda: recorder.requests, "the login check")
        [message] = _messages(recorder)
    assert message["title"] == \
        "snapshotter: 2 accounts without a working session (login check)"
    assert "log in to Kite: http://127.0.0.1:8000/kite/login/DM0001" in message["message"]


def _raw_without_serve_url(tmp_path: Path, recorder: Recorder) -> dict[str, Any]:
    return {
        "database": {"url": f"sqlite:///{tmp_path / 'snapshots.db'}"},
        "state_dir": str(tmp_path / "state"),
        "notify": {"urls": [recorder.base_url.replace("http://", "json://")
                            + f"/notify/{TOKEN}"]},
        "accounts": [{"user_id": "DM0001", "auth": "manual", "api_key": "app1key",
                      "api_secret": "AppSecretNumberOne"},
                     {"user_id": "DM0002", "auth": "manual"}],
    }


def test_reminder_trigger_fires_on_session_days_only() -> None:
    trigger = ReminderTrigger(TradingCalendar(), time(9, 0))
    assert trigger.get_next_fire_time(None, _ist("2026-11-23T10:00")) == \
        _ist("2026-11-25T09:00")  # past Monday's; 2026-11-24 is a holiday
    fired = _ist("2026-11-27T09:00")
    assert trigger.get_next_fire_time(fired, fired) == _ist("2026-11-30T09:00")


@pytest.mark.parametrize(("serve", "link"), [
    (ServeConfig(), "http://127.0.0.1:8000/kite/login/DM0001"),
    (ServeConfig(host="::1", port=8443), "http://[::1]:8443/kite/login/DM0001"),
    (ServeConfig(url="https://me.example.org/kite-dash"),
     "https://me.example.org/kite-dash/kite/login/DM0001"),
])
def test_dashboard_login_url(serve: ServeConfig, link: str) -> None:
    assert notify.dashboard_login_url(serve, "DM0001") == link
