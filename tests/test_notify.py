"""`notify.urls` / `notify.on`: one Apprise message per run, through the real command,
received by a local server over Apprise's json:// schema; a notification that cannot be
delivered never changes the run's result."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from snapshotter.sessions import TradingCalendar, utc_now
from snapshotter.simulator import KiteSimulator, SimAccount, demo_accounts
from tests.conftest import (
    LOCAL_ONLY,
    Recorder,
    ShiftedClock,
    config_dict,
    run_cli,
    write_config,
)
from tests.test_startup import HEAVY, imported

TOKEN = "Tok3nZq9WvX27"  # stands for the token an Apprise URL carries


@pytest.fixture(autouse=True)
def _local_only(monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in LOCAL_ONLY.items():
        monkeypatch.setenv(name, value)


def _url(recorder: Recorder) -> str:
    return recorder.base_url.replace("http://", "json://") + f"/notify/{TOKEN}"


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _config(tmp_path: Path, sim: KiteSimulator, accounts: list[SimAccount], database_url: str,
            **notify: Any) -> dict[str, Any]:
    return config_dict(sim, accounts, database_url, tmp_path / "state", notify=notify)


def _run(tmp_path: Path, data: dict[str, Any], *args: str) -> subprocess.CompletedProcess[str]:
    cfg = write_config(tmp_path / "config.yaml", data)
    return run_cli("--config", str(cfg), "run", *args, env=LOCAL_ONLY)


def _messages(recorder: Recorder) -> list[dict[str, Any]]:
    assert all(path == f"/notify/{TOKEN}" for _, path, _ in recorder.requests)
    return [json.loads(body) for _, _, body in recorder.requests]


def _session_day() -> str:
    return TradingCalendar().latest_opened(utc_now()).day.isoformat()


def _warning_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if "notification" in line]


def _assert_no_secrets(accounts: list[SimAccount], *texts: str) -> None:
    for text in texts:
        for acc in accounts:
            assert acc.password not in text and acc.totp_secret not in text
        assert TOKEN not in text


# -- what is sent, and when --------------------------------------------------------------


def test_a_failed_account_is_one_message_naming_it_and_why(
        sim: KiteSimulator, sim_accounts: list[SimAccount], database_url: str,
        tmp_path: Path, recorder: Recorder) -> None:
    data = _config(tmp_path, sim, sim_accounts, database_url, urls=[_url(recorder)])
    data["accounts"][1]["password"] = "not-the-password-77"
    run = _run(tmp_path, data)
    assert run.returncode == 78, run.stderr  # credentials rejected, as without notify
    [message] = _messages(recorder)
    failed, ok1, ok2 = (sim_accounts[1].user_id, sim_accounts[0].user_id,
                        sim_accounts[2].user_id)
    assert message["type"] == "failure"
    assert message["title"] == f"snapshotter: 1 account failed (session {_session_day()})"
    lines = message["message"].splitlines()
    assert lines[0].startswith(f"{failed}: failed: Invalid `password`")
    assert lines[1:] == [f"other accounts: {ok1} ok, {ok2} ok"]
    _assert_no_secrets(sim_accounts, json.dumps(message), run.stdout, run.stderr)
    assert "not-the-password-77" not in json.dumps(message) + run.stdout + run.stderr
    assert _warning_lines(run.stderr) == []


def test_a_clean_run_sends_nothing_by_default(
        sim: KiteSimulator, sim_accounts: list[SimAccount], tmp_path: Path,
        recorder: Recorder) -> None:
    run = _run(tmp_path, _config(tmp_path, sim, sim_accounts,
                                 f"sqlite:///{tmp_path / 'snapshots.db'}",
                                 urls=[_url(recorder)]))
    assert run.returncode == 0, run.stderr
    assert recorder.requests == []


def test_warnings_notify_unless_on_leaves_them_out(
        sim: KiteSimulator, sim_accounts: list[SimAccount], database_url: str,
        tmp_path: Path, recorder: Recorder) -> None:
    user = sim_accounts[2].user_id
    held = sim.portfolio(user)["holdings"][0]
    held["last_price"] = None
    data = _config(tmp_path, sim, sim_accounts, database_url, urls=[_url(recorder)],
                   on=["failure"])
    run = _run(tmp_path, data)
    assert run.returncode == 0, run.stderr
    assert f"warning: account {user}: holdings" in run.stderr
    assert recorder.requests == []

    del data["notify"]["on"]  # the default: failure and warning
    again = _run(tmp_path, data, "--force")
    assert again.returncode == 0, again.stderr
    [message] = _messages(recorder)
    assert message["type"] == "warning"
    assert message["title"] == (f"snapshotter: 1 account with warnings "
                                f"(session {_session_day()})")
    lines = message["message"].splitlines()
    assert lines[0].startswith(f"{user}: ok with 1 warning (not final, fetched again later) "
                               "(holdings ")
    assert lines[1] == (f"  - holdings {held['exchange']}:{held['tradingsymbol']} has no "
                        "last_price (valued at close_price)")
    others = [a.user_id for a in sim_accounts[:2]]
    assert lines[2:] == [f"other accounts: {others[0]} ok, {others[1]} ok"]
    _assert_no_secrets(sim_accounts, json.dumps(message), again.stdout, again.stderr)


def test_summary_is_sent_after_every_run_with_counts(
        sim: KiteSimulator, sim_accounts: list[SimAccount], tmp_path: Path,
        recorder: Recorder) -> None:
    data = _config(tmp_path, sim, sim_accounts, f"sqlite:///{tmp_path / 'snapshots.db'}",
                   urls=[_url(recorder)], on=["summary"])
    run = _run(tmp_path, data)
    assert run.returncode == 0, run.stderr
    [message] = _messages(recorder)
    assert message["type"] == "info"
    assert message["title"] == f"snapshotter: 3 accounts ok (session {_session_day()})"
    lines = message["message"].splitlines()
    assert [line.split(":")[0] for line in lines] == [a.user_id for a in sim_accounts]
    for acc, line in zip(sim_accounts, lines, strict=True):
        holdings = len(sim.portfolio(acc.user_id)["holdings"])
        assert f"(holdings {holdings}, positions " in line
        assert line.startswith(f"{acc.user_id}: ok, ")

    second = _run(tmp_path, data)  # whatever it finds to do, it is a run: one message
    assert second.returncode == 0, second.stderr
    assert len(_messages(recorder)) == 2


def test_a_run_that_fails_as_a_whole_notifies(
        sim: KiteSimulator, sim_accounts: list[SimAccount], tmp_path: Path,
        recorder: Recorder) -> None:
    path = tmp_path / "no" / "such" / "dir" / "snapshots.db"
    run = _run(tmp_path, _config(tmp_path, sim, sim_accounts, f"sqlite:///{path}",
                                 urls=[_url(recorder)]))
    assert run.returncode == 75, run.stderr  # database unreachable, as without notify
    [message] = _messages(recorder)
    assert (message["type"], message["title"]) == ("failure", "snapshotter: the run failed")
    assert str(path) in message["message"]
    assert sim.requests_log == []


def test_a_missing_postgres_database_notifies_without_its_password(
        postgres_server: str, sim: KiteSimulator, sim_accounts: list[SimAccount],
        tmp_path: Path, recorder: Recorder) -> None:
    url = postgres_server.rsplit("/", 1)[0].replace(
        "postgres@", "postgres:hunter2-db-pw@") + "/snapshotter_no_such_database"
    run = _run(tmp_path, _config(tmp_path, sim, sim_accounts, url, urls=[_url(recorder)]))
    assert run.returncode == 75, run.stderr
    [message] = _messages(recorder)
    assert message["title"] == "snapshotter: the run failed"
    assert "snapshotter_no_such_database" in message["message"]
    assert "hunter2-db-pw" not in message["message"]


def test_a_run_that_waited_too_long_for_the_lock_notifies(
        sim: KiteSimulator, sim_accounts: list[SimAccount], database_url: str,
        tmp_path: Path, recorder: Recorder) -> None:
    from tests.test_database_trouble import _hold_run_lock

    data = _config(tmp_path, sim, sim_accounts, database_url, urls=[_url(recorder)])
    data["kite"]["run_timeout"] = 2
    assert run_cli("--config", str(write_config(tmp_path / "config.yaml", data)),
                   "db", "upgrade").returncode == 0
    with _hold_run_lock(database_url):
        run = _run(tmp_path, data)
    assert run.returncode == 69, run.stderr
    [message] = _messages(recorder)
    assert message["title"] == "snapshotter: the run failed"
    assert "another snapshotter run still holds the run lock" in message["message"]


# -- a notification never fails the run --------------------------------------------------


def test_an_unreachable_server_is_one_warning_and_the_same_exit_code(
        sim: KiteSimulator, sim_accounts: list[SimAccount], tmp_path: Path,
        recorder: Recorder) -> None:
    down = f"json://127.0.0.1:{_closed_port()}/notify/{TOKEN}"
    data = _config(tmp_path, sim, sim_accounts, f"sqlite:///{tmp_path / 'snapshots.db'}",
                   urls=[down, _url(recorder)])
    data["accounts"][0]["password"] = "not-the-password-77"
    run = _run(tmp_path, data)
    assert run.returncode == 78, run.stderr
    [line] = _warning_lines(run.stderr)
    assert "WARNING notification not delivered: notify.urls[0] (JSON): " in line
    assert "the run's result stands" in line
    assert "Traceback" not in run.stderr
    assert len(_messages(recorder)) == 1  # the other URL still got it
    _assert_no_secrets(sim_accounts, run.stdout, run.stderr)


def test_a_server_answering_an_error_is_one_warning(
        sim: KiteSimulator, sim_accounts: list[SimAccount], tmp_path: Path,
        recorder: Recorder) -> None:
    recorder.status = 500
    run = _run(tmp_path, _config(tmp_path, sim, sim_accounts[:1],
                                 f"sqlite:///{tmp_path / 'snapshots.db'}",
                                 urls=[_url(recorder)], on=["summary"]))
    assert run.returncode == 0, run.stderr
    [line] = _warning_lines(run.stderr)
    assert "notify.urls[0] (JSON)" in line and "500" in line
    assert len(recorder.requests) == 1
    _assert_no_secrets(sim_accounts, run.stdout, run.stderr)


@pytest.fixture
def silent_server() -> Iterator[int]:
    """Accepts connections and never answers."""
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen(8)
        yield int(server.getsockname()[1])


def test_a_server_that_never_answers_holds_the_run_for_notify_timeout_only(
        sim: KiteSimulator, sim_accounts: list[SimAccount], tmp_path: Path,
        silent_server: int) -> None:
    # Apprise's own timeouts set to hours: only notify.timeout ends it.
    hang = f"json://127.0.0.1:{silent_server}/notify/{TOKEN}?rto=36000&cto=36000"
    data = _config(tmp_path, sim, sim_accounts[:1], f"sqlite:///{tmp_path / 'snapshots.db'}",
                   urls=[hang], on=["summary"], timeout=2)
    run = _run(tmp_path, data)
    assert run.returncode == 0, run.stderr
    [line] = _warning_lines(run.stderr)
    assert "notify.urls[0] (JSON): no answer within 2 s (notify.timeout)" in line
    _assert_no_secrets(sim_accounts, run.stdout, run.stderr)


# -- configuration ------------------------------------------------------------------------


@pytest.mark.parametrize(("notify", "line"), [
    ({"urls": "json://127.0.0.1/x"}, "notify.urls: must be a list of Apprise URLs"),
    ({"urls": ["json://127.0.0.1/x", 42]}, "notify.urls[1]: not an Apprise URL"),
    ({"urls": ["json://127.0.0.1/x", f"no scheme {TOKEN}"]},
     "notify.urls[1]: not an Apprise URL"),
    ({"urls": ["json://127.0.0.1/x"], "on": ["failure", "failures"]},
     "notify.on[1]: unknown value 'failures' (did you mean 'failure'?): expected failure, "
     "warning, summary"),
    ({"on": ["weekly"]}, "notify.on[0]: unknown value 'weekly': expected failure, warning, "
                         "summary"),
    ({"timeout": 0}, "notify.timeout: must be at least 1"),
    ({"url": ["json://127.0.0.1/x"]}, "notify.url: unknown key (did you mean 'urls'?)"),
    ({"urls": [f"tgramm://123456789:{TOKEN}/987654321"]},
     "notify.urls[0]: Apprise has no service tgramm://"),
    ({"urls": [f"json://[::1/{TOKEN}"]},
     "notify.urls[0]: Apprise does not accept this JSON URL"),
    ({"urls": ["json://127.0.0.1/x", f"tgram://{TOKEN}"]},
     "notify.urls[1]: Apprise does not accept this Telegram URL: a part is missing or "
     "malformed"),
])
def test_a_bad_notify_config_is_one_line_and_exit_2(
        sim: KiteSimulator, sim_accounts: list[SimAccount], tmp_path: Path,
        notify: dict[str, Any], line: str) -> None:
    data = config_dict(sim, sim_accounts, f"sqlite:///{tmp_path / 'snapshots.db'}",
                       tmp_path / "state", notify=notify)
    run = _run(tmp_path, data)
    assert run.returncode == 2, run.stderr
    [error] = [x for x in run.stderr.splitlines() if x.strip()]
    assert error.startswith(f"error: {tmp_path / 'config.yaml'}: {line}"), error
    assert TOKEN not in run.stderr and "Traceback" not in run.stderr
    assert sim.requests_log == []  # before any login


def test_on_written_as_a_plain_yaml_key(sim: KiteSimulator, sim_accounts: list[SimAccount],
                                        tmp_path: Path, recorder: Recorder) -> None:
    """YAML 1.1 reads an unquoted `on:` key as true: it still means notify.on."""
    cfg = tmp_path / "config.yaml"
    data = config_dict(sim, sim_accounts[:1], f"sqlite:///{tmp_path / 'snapshots.db'}",
                       tmp_path / "state")
    write_config(cfg, data)
    cfg.write_text(cfg.read_text() + f"notify:\n  urls:\n    - {_url(recorder)}\n"
                   "  on: [summary]\n")
    run = run_cli("--config", str(cfg), "run")
    assert run.returncode == 0, run.stderr
    assert _messages(recorder)[0]["type"] == "info"


def test_urls_from_the_environment_and_a_literal_token_warned_about(
        sim: KiteSimulator, sim_accounts: list[SimAccount], tmp_path: Path,
        recorder: Recorder) -> None:
    data = _config(tmp_path, sim, sim_accounts[:1], f"sqlite:///{tmp_path / 'snapshots.db'}",
                   urls=["${NOTIFY_URL}"], on=["summary"])
    data["accounts"][0].update(password="${KITE_PW}", totp_secret="${KITE_TOTP}")
    env = {**LOCAL_ONLY, "NOTIFY_URL": _url(recorder), "KITE_PW": sim_accounts[0].password,
           "KITE_TOTP": sim_accounts[0].totp_secret}
    cfg = write_config(tmp_path / "config.yaml", data)
    cfg.chmod(0o644)
    run = run_cli("--config", str(cfg), "run", env=env)
    assert run.returncode == 0, run.stderr
    assert len(_messages(recorder)) == 1
    assert "holds a literal secret" not in run.stderr

    data["notify"]["urls"] = [_url(recorder)]  # the token written in the file itself
    cfg = write_config(tmp_path / "config.yaml", data)
    cfg.chmod(0o644)
    again = run_cli("--config", str(cfg), "-v", "run", "--force", env=env)
    assert again.returncode == 0, again.stderr
    assert "holds a literal secret and is readable by group/others" in again.stderr
    assert len(_messages(recorder)) == 2
    _assert_no_secrets(sim_accounts, again.stdout, again.stderr)


def test_status_does_not_load_apprise(sim: KiteSimulator, sim_accounts: list[SimAccount],
                                      tmp_path: Path, recorder: Recorder) -> None:
    data = _config(tmp_path, sim, sim_accounts, f"sqlite:///{tmp_path / 'snapshots.db'}",
                   urls=[_url(recorder)], on=["summary"])
    cfg = write_config(tmp_path / "config.yaml", data)
    assert run_cli("--config", str(cfg), "db", "upgrade").returncode == 0
    result, modules = imported("--config", str(cfg), "status")
    assert result.returncode == 1, result.stderr[-2000:]
    assert not modules & (HEAVY | {"apprise"}), sorted(modules & (HEAVY | {"apprise"}))
    assert recorder.requests == []


# -- the daemon and the login check -------------------------------------------------------


def test_the_daemon_notifies_after_its_runs(
        sim: KiteSimulator, sim_accounts: list[SimAccount], database_url: str,
        tmp_path: Path, recorder: Recorder) -> None:
    data = _config(tmp_path, sim, sim_accounts, database_url, urls=[_url(recorder)])
    data["accounts"][0]["password"] = "not-the-password-77"  # rejected: never retried
    data["kite"]["retries"] = 0
    transient = sim_accounts[1].user_id
    sim.fail_next(1, "503", "/oms/user/margins", user_id=transient)  # retried later
    cfg = write_config(tmp_path / "config.yaml", data)
    proc = subprocess.Popen([sys.executable, "-m", "snapshotter", "--config", str(cfg),
                             "daemon"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env={**os.environ, **LOCAL_ONLY})
    try:
        requests = recorder.wait(1, timeout=60)  # the catch-up run on start
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, err
    assert len(requests) == 1, err
    [message] = _messages(recorder)
    assert message["type"] == "failure"
    assert message["title"].startswith("snapshotter: 2 accounts failed (session ")
    rejected, retried, other, retry = message["message"].splitlines()
    assert rejected.startswith(f"{sim_accounts[0].user_id}: failed: Invalid `password`")
    assert retried.startswith(f"{transient}: failed: ") and "HTTP 503" in retried
    assert other == f"other accounts: {sim_accounts[2].user_id} ok"
    assert re.fullmatch(rf"retrying {transient} at \d\d:\d\d IST \(attempt 1 of 3\)",
                        retry), retry
    _assert_no_secrets(sim_accounts, json.dumps(message), out, err)
    assert "not-the-password-77" not in json.dumps(message) + err


def test_login_check_notifies_a_manual_account_without_a_session(
        sim: KiteSimulator, sim_accounts: list[SimAccount], tmp_path: Path,
        recorder: Recorder) -> None:
    data = _config(tmp_path, sim, sim_accounts, f"sqlite:///{tmp_path / 'snapshots.db'}",
                   urls=[_url(recorder)])
    manual = sim_accounts[1].user_id
    data["accounts"][1] = {"user_id": manual, "auth": "manual"}
    cfg = write_config(tmp_path / "config.yaml", data)
    check = run_cli("--config", str(cfg), "login", "--check")
    assert check.returncode == 1, check.stderr
    [message] = _messages(recorder)
    assert message["title"] == ("snapshotter: 1 account without a working session "
                                "(login check)")
    assert message["message"] == (f"{manual}: no valid session: run `snapshotter login "
                                  f"--account {manual}`")


def test_notifies_under_libfaketime(faketime_lib: str, tmp_path: Path,
                                    recorder: Recorder) -> None:
    """A rehearsal with the clock shifted (libfaketime): the message goes out, and a
    silent server is still given up at notify.timeout (no timed thread waits)."""
    offset = int(datetime(2026, 11, 27, 11, 30, tzinfo=UTC).timestamp() - time.time())
    accounts = demo_accounts(1, seed=3)
    with KiteSimulator(accounts, clock=ShiftedClock(offset)) as sim, \
            socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        hang = f"json://127.0.0.1:{silent.getsockname()[1]}/x?rto=36000&cto=36000"
        data = _config(tmp_path, sim, accounts, f"sqlite:///{tmp_path / 'snapshots.db'}",
                       urls=[_url(recorder), hang], on=["summary"], timeout=3)
        cfg = write_config(tmp_path / "config.yaml", data)
        run = run_cli("--config", str(cfg), "run", env={
            **LOCAL_ONLY, "LD_PRELOAD": faketime_lib, "FAKETIME": f"{offset:+d}",
            "FAKETIME_DONT_FAKE_MONOTONIC": "0"})
    assert run.returncode == 0, run.stderr
    [message] = _messages(recorder)
    assert message["title"] == "snapshotter: 1 account ok (session 2026-11-27)"
    [line] = _warning_lines(run.stderr)
    assert "notify.urls[1] (JSON): no answer within 3 s" in line
