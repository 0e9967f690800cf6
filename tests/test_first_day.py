"""First-day rough edges (issue 17, sections 2 and 4), through the real `snapshotter`
command: a relative state_dir, Ctrl-C during logins, read-only databases, the simulator's
Kite Connect apps, command-line wording, systemd warnings and charts."""

from __future__ import annotations

import contextlib
import html
import json
import os
import re
import signal
import socket
import subprocess
import sys
import uuid
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import pytest
import sqlalchemy as sa
import yaml

from snapshotter.kite.token_cache import TokenCache
from snapshotter.simulator import KiteSimulator, SimAccount
from tests.conftest import config_dict, query_rows, run_cli, wait_until, write_config


def _no_traceback(result: subprocess.CompletedProcess[str]) -> None:
    assert "Traceback" not in result.stderr, result.stderr


# -- a relative state_dir is relative to the config file ---------------------------------


def test_relative_state_dir_is_read_against_the_config_directory(
        sim: KiteSimulator, sim_accounts: list[SimAccount], tmp_path: Path) -> None:
    """`simulate --write-config` writes `state_dir: state`: run from anywhere, one state
    directory, so no second login (each spends a 2FA code and ends the browser session)."""
    conf, work = tmp_path / "conf", tmp_path / "work"
    conf.mkdir()
    work.mkdir()
    cfg = write_config(conf / "config.yaml", config_dict(
        sim, sim_accounts[:1], f"sqlite:///{tmp_path / 'snapshots.db'}", Path("state")))
    first = run_cli("--config", str(cfg), "run", cwd=work)
    assert first.returncode == 0, first.stdout + first.stderr
    again = run_cli("--config", "conf/config.yaml", "run", "--force", cwd=tmp_path)
    assert again.returncode == 0, again.stdout + again.stderr
    user = sim_accounts[0].user_id
    assert sim.login_count[user] == 1
    assert (conf / "state").is_dir()
    assert not list(work.iterdir()) and not (tmp_path / "state").exists()


def test_a_state_dir_left_in_the_working_directory_is_pointed_out(
        sim: KiteSimulator, sim_accounts: list[SimAccount], tmp_path: Path) -> None:
    conf, work = tmp_path / "conf", tmp_path / "work"
    conf.mkdir()
    (work / "state").mkdir(parents=True)
    cfg = write_config(conf / "config.yaml", config_dict(
        sim, sim_accounts[:1], f"sqlite:///{tmp_path / 'snapshots.db'}", Path("state")))
    result = run_cli("--config", str(cfg), "run", cwd=work)
    assert result.returncode == 0, result.stdout + result.stderr
    warnings = [line.split(" WARNING ", 1)[1] for line in result.stderr.splitlines()
                if " WARNING " in line]
    assert warnings == [
        f"{cfg}: state_dir: a relative path is relative to this file's directory "
        f"({conf / 'state'}); the state directory at {work / 'state'} (the working "
        "directory) is not used: move it there, or give its absolute path"]


# -- Ctrl-C during logins ----------------------------------------------------------------

LOGIN_PATHS = ("/api/login", "/api/twofa")


def _ctrl_c_as_at_a_terminal() -> None:
    """A shell without job control starts background commands with SIGINT ignored (and a
    test suite run from one passes that on): give the command Ctrl-C as a terminal has it."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def test_ctrl_c_during_logins_starts_no_login_and_is_recorded_interrupted(
        sim: KiteSimulator, sim_accounts: list[SimAccount], database_url: str,
        tmp_path: Path) -> None:
    data = config_dict(sim, sim_accounts, database_url, tmp_path / "state")
    data["kite"]["timeout"] = 30  # the held logins end by the interrupt, not a timeout
    cfg = write_config(tmp_path / "config.yaml", data)
    sim.slow_seconds = 300  # held until the simulator stops
    sim.fail_next(len(sim_accounts), "slow", "/api/login")
    proc = subprocess.Popen([sys.executable, "-m", "snapshotter", "--config", str(cfg), "run"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            stdin=subprocess.DEVNULL, preexec_fn=_ctrl_c_as_at_a_terminal)
    try:
        wait_until(lambda: len([p for _, p, _u in sim.requests_log if p == "/api/login"])
                  == len(sim_accounts), "every account's login held by the simulator")
        seen = len(sim.requests_log)
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=300)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 130, out + err
    assert [p for _, p, _u in sim.requests_log[seen:] if p in LOGIN_PATHS] == []
    assert "Traceback" not in err and "run deadline" not in out + err
    rows = query_rows(database_url, "SELECT account, status, error FROM snapshots "
                      "ORDER BY account")
    assert [(r["account"], r["status"]) for r in rows] == \
        [(a.user_id, "failed") for a in sim_accounts]
    for row in rows:
        assert row["error"].startswith(f"account {row['account']}: interrupted (Ctrl-C) "
                                       "before it finished"), row
    status = run_cli("--config", str(cfg), "status")
    assert status.returncode == 1, status.stdout + status.stderr
    for acc in sim_accounts:
        assert (f"warning: account {acc.user_id}: the last run was interrupted (Ctrl-C) "
                "before it finished") in status.stdout, status.stdout


# -- status: JSON, whole words, no abbreviated options -----------------------------------


def test_status_prints_json_and_cuts_the_last_failure_at_a_word(
        sim: KiteSimulator, sim_accounts: list[SimAccount], database_url: str,
        tmp_path: Path) -> None:
    data = config_dict(sim, sim_accounts[:2], database_url, tmp_path / "state")
    data["accounts"][1]["password"] = "wrong-password-1"
    cfg = write_config(tmp_path / "config.yaml", data)
    run = run_cli("--config", str(cfg), "run")
    assert run.returncode == 78, run.stdout + run.stderr
    [failure] = query_rows(database_url, "SELECT error FROM snapshots WHERE status = 'failed'")
    error = failure["error"]
    ok_user, bad_user = sim_accounts[0].user_id, sim_accounts[1].user_id
    assert len(error) > 100

    table = run_cli("--config", str(cfg), "status")
    assert table.returncode == 1, table.stderr
    row = next(line for line in table.stdout.splitlines() if line.startswith(bad_user))
    shown = row.split(": ", 1)[1].split("  ")[0]
    assert shown.endswith(" ...")
    kept = shown.removesuffix(" ...")
    assert error.startswith(kept) and error[len(kept)] == " ", (kept, error)

    for args in (("--json",), ("--format", "json")):
        result = run_cli("--config", str(cfg), "status", *args)
        assert result.returncode == 1, result.stderr
        report = json.loads(result.stdout)
        assert report["healthy"] is False
        by_account = {a["account"]: a for a in report["accounts"]}
        assert by_account[bad_user]["last_failure"]["error"] == error
        assert by_account[bad_user]["last_complete"] is None
        assert by_account[ok_user]["has_latest_session"] is True
        assert by_account[ok_user]["last_complete"]["taken_at"].endswith("+05:30")
        assert by_account[bad_user]["next_run"] == {"at": None, "note": "login rejected",
                                                    "overdue": False}


def test_no_option_is_taken_from_its_abbreviation(tmp_path: Path) -> None:
    for args, wanted in ((("status", "--json-l"), "--json-l (did you mean --json-logs?)"),
                         (("run", "--acc", "DM0001"), "--acc DM0001 (did you mean --account?)"),
                         (("report", "summary", "--form", "json"), "--form json")):
        result = run_cli("--config", str(tmp_path / "none.yaml"), *args)
        assert result.returncode == 2, (args, result.stdout + result.stderr)
        assert f"unrecognized arguments: {wanted}" in result.stderr, result.stderr


# -- read commands on a read-only database -----------------------------------------------


@contextlib.contextmanager
def _read_only(database_url: str, db_dir: Path) -> Iterator[str]:
    """The database as a reader without write access sees it: SQLite on a read-only
    mount (a read-only directory and file when not root), PostgreSQL through a role that
    may only SELECT. Yields the URL to read it with."""
    if database_url.startswith("sqlite"):
        if os.geteuid() == 0:
            mounted = subprocess.run(["mount", "--bind", "-o", "ro", str(db_dir), str(db_dir)],
                                     capture_output=True, text=True)
            if mounted.returncode != 0:
                pytest.skip(f"cannot make a read-only mount: {mounted.stderr.strip()}")
            try:
                yield database_url
            finally:
                subprocess.run(["umount", str(db_dir)], check=True)
        else:
            files = list(db_dir.iterdir())
            for file in files:
                file.chmod(0o400)
            db_dir.chmod(0o500)
            try:
                yield database_url
            finally:
                db_dir.chmod(0o700)
                for file in files:
                    file.chmod(0o600)
        return
    role = f"reader_{uuid.uuid4().hex[:8]}"
    admin = sa.create_engine(database_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text(f'CREATE ROLE "{role}" LOGIN'))
        conn.execute(sa.text(f'GRANT USAGE ON SCHEMA public TO "{role}"'))
        conn.execute(sa.text(f'GRANT SELECT ON ALL TABLES IN SCHEMA public TO "{role}"'))
    try:
        yield database_url.replace("//postgres@", f"//{role}@")
    finally:
        with admin.connect() as conn:
            conn.execute(sa.text(f'DROP OWNED BY "{role}"'))
            conn.execute(sa.text(f'DROP ROLE "{role}"'))
        admin.dispose()


def test_read_commands_work_on_a_read_only_database(
        sim: KiteSimulator, sim_accounts: list[SimAccount], database_url: str,
        tmp_path: Path) -> None:
    db_dir = tmp_path / "db"
    db_dir.mkdir()
    if database_url.startswith("sqlite"):
        database_url = f"sqlite:///{db_dir / 'snapshots.db'}"
    data = config_dict(sim, sim_accounts, database_url, tmp_path / "state")
    writer = write_config(tmp_path / "writer.yaml", data)
    run = run_cli("--config", str(writer), "run")
    assert run.returncode == 0, run.stdout + run.stderr
    before = sorted(p.name for p in db_dir.iterdir())
    with _read_only(database_url, db_dir) as url:
        cfg = write_config(tmp_path / "reader.yaml", {**data, "database": {"url": url}})
        status = run_cli("--config", str(cfg), "status")
        summary = run_cli("--config", str(cfg), "report", "summary", "--format", "json")
        export = run_cli("--config", str(cfg), "export", "--out", str(tmp_path / "export"))
        chart = run_cli("--config", str(cfg), "chart", "--out", str(tmp_path / "c.png"))
        writer_run = run_cli("--config", str(cfg), "run", "--force")
    for result in (status, summary, export, chart):
        assert result.returncode == 0, (result.args[3:], result.stdout + result.stderr)
        _no_traceback(result)
    assert sorted(r["account"] for r in json.loads(summary.stdout) if r["account"] != "ALL") == \
        [a.user_id for a in sim_accounts]
    assert (tmp_path / "c.png").stat().st_size > 0
    assert (tmp_path / "export" / "snapshots.csv").exists()
    # Only writers need write access.
    assert writer_run.returncode == 75, writer_run.stdout + writer_run.stderr
    assert len(writer_run.stderr.splitlines()) == 1
    assert sorted(p.name for p in db_dir.iterdir()) == before


# -- the simulator: Kite Connect apps, a busy port -----------------------------------------


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def test_simulate_writes_a_connect_config_that_run_logs_in_with(tmp_path: Path) -> None:
    """`auth: connect` (the recommended mode) tried offline: the simulator serves a Kite
    Connect app per account, and its config names them."""
    cfg = tmp_path / "sim.yaml"
    proc = subprocess.Popen(
        [sys.executable, "-m", "snapshotter", "simulate", "--port", "0", "--accounts", "2",
         "--auth", "connect", "--write-config", str(cfg)], cwd=tmp_path,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, stdin=subprocess.DEVNULL)
    try:
        assert proc.stdout is not None
        wrote, listening = proc.stdout.readline(), proc.stdout.readline()
        assert wrote.startswith(f"wrote {cfg} (mode 0600) for 2 simulated account(s), "
                                "auth: connect"), wrote + listening
        data = yaml.safe_load(cfg.read_text())
        port = data["kite"]["base_url"].rsplit(":", 1)[1]
        assert port != "0" and f"127.0.0.1:{port}" in listening
        assert [a["auth"] for a in data["accounts"]] == ["connect", "connect"]
        assert all(a["api_key"] and a["api_secret"] for a in data["accounts"])
        run = run_cli("--config", str(cfg), "run", cwd=tmp_path)
        assert run.returncode == 0, run.stdout + run.stderr
        assert run.stdout.count(": ok, ") == 2
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.communicate(timeout=60)
    for acc in data["accounts"]:
        assert TokenCache(tmp_path / "state").load(acc["user_id"]).mode == "connect"


def test_simulate_on_a_busy_port_names_it_and_writes_no_config(tmp_path: Path) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        cfg = tmp_path / "sim.yaml"
        result = run_cli("simulate", "--port", str(port), "--write-config", str(cfg))
    assert result.returncode == 2, result.stdout + result.stderr
    _no_traceback(result)
    assert result.stderr.splitlines() == [
        f"error: port {port} on 127.0.0.1 is already in use (another `snapshotter simulate`?): "
        f"choose a free one with --port N; {cfg} was not written"]
    assert not cfg.exists()


def test_the_demo_offers_kite_connect(tmp_path: Path) -> None:
    result = run_cli("demo", "--days", "2", "--accounts", "1", "--auth", "connect",
                     "--out", str(tmp_path), timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "for 1 simulated account(s), auth: connect" in result.stdout
    assert TokenCache(tmp_path / "state").load("DM0001").mode == "connect"
    rows = query_rows(f"sqlite:///{tmp_path / 'demo.db'}",
                      "SELECT count(*) AS n FROM snapshots WHERE status = 'ok'")
    assert rows == [{"n": 2}]


# -- the command line's words ------------------------------------------------------------


@pytest.fixture
def stored(sim: KiteSimulator, sim_accounts: list[SimAccount], database_url: str,
           tmp_path: Path) -> Path:
    """A config whose database holds one run of every simulated account."""
    cfg = write_config(tmp_path / "config.yaml", config_dict(
        sim, sim_accounts, database_url, tmp_path / "state"))
    result = run_cli("--config", str(cfg), "run")
    assert result.returncode == 0, result.stdout + result.stderr
    return cfg


def test_reports_say_why_they_have_no_rows_and_holdings_take_a_symbol(
        stored: Path, sim_accounts: list[SimAccount]) -> None:
    portfolio = sim_accounts[0].portfolio["holdings"]
    symbol = portfolio[0]["tradingsymbol"]
    holders = sorted(a.user_id for a in sim_accounts
                     if any(h["tradingsymbol"] == symbol for h in a.portfolio["holdings"]))
    only = run_cli("--config", str(stored), "report", "holdings", symbol.lower(),
                   "--format", "json")
    assert only.returncode == 0, only.stderr
    rows = json.loads(only.stdout)
    assert {r["tradingsymbol"] for r in rows} == {symbol}
    assert sorted(r["account"] for r in rows) == holders

    typo = symbol[:-1] + ("Q" if symbol[-1] != "Q" else "Z")
    for kind in ("history", "holdings"):
        unknown = run_cli("--config", str(stored), "report", kind, typo)
        assert unknown.returncode == 0, unknown.stderr
        assert unknown.stdout.strip().startswith(
            f"(no rows: {typo} was never held by any account"), unknown.stdout
    hinted = run_cli("--config", str(stored), "report", "history", typo, "--format", "json")
    assert json.loads(hinted.stdout) == []
    assert hinted.stderr.startswith(f"note: no rows: {typo} was never held by any account")

    backwards = run_cli("--config", str(stored), "report", "pnl", "--from", "2026-03-31",
                        "--to", "2026-03-01")
    assert backwards.returncode == 0, backwards.stderr
    assert backwards.stdout.strip() == "(no rows: --from 2026-03-31 is after --to 2026-03-01)"

    refused = run_cli("--config", str(stored), "report", "summary", symbol)
    assert refused.returncode == 2
    assert refused.stderr.startswith(f"error: report summary takes no SYMBOL ('{symbol}')")


def test_an_invalid_date_is_said_in_the_programs_words(tmp_path: Path) -> None:
    for args in (("report", "pnl", "--from", "2026-02-30"),
                 ("benchmark", "fetch", "NIFTY50", "--to", "31-03-2026")):
        result = run_cli("--config", str(tmp_path / "none.yaml"), *args)
        assert result.returncode == 2
        value = args[-1]
        assert result.stderr.splitlines()[-1].endswith(
            f"'{value}' is not a date: give YYYY-MM-DD, e.g. 2026-03-31"), result.stderr
        assert "fromisoformat" not in result.stderr


def test_run_of_an_unknown_account_suggests_the_closest(
        sim: KiteSimulator, sim_accounts: list[SimAccount], tmp_path: Path) -> None:
    cfg = write_config(tmp_path / "config.yaml", config_dict(
        sim, sim_accounts, f"sqlite:///{tmp_path / 'db.sqlite'}", tmp_path / "state"))
    result = run_cli("--config", str(cfg), "run", "--account", "DM0009")
    assert result.returncode == 2
    assert result.stderr.startswith(f"error: {cfg}: no account 'DM0009' in accounts "
                                    "(did you mean 'DM000"), result.stderr
    assert len(result.stderr.splitlines()) == 1
    assert not sim.requests_log


@pytest.mark.parametrize(("text", "line", "problem"), [
    ('database:\n  url: "sqlite:///x.db\naccounts:\n  - user_id: AB1234\n    auth: manual\n',
     2, "a quoted value is never closed (its closing quote is missing)"),
    ("accounts:\n  - user_id: AB1234\n    auth manual\n    label: x\nstate_dir: /tmp/x\n",
     3, "could not find expected ':'"),
])
def test_yaml_errors_name_the_line_at_fault(tmp_path: Path, text: str, line: int,
                                            problem: str) -> None:
    cfg = tmp_path / "config.yaml"
    cfg.write_text(text)
    result = run_cli("--config", str(cfg), "status")
    assert result.returncode == 2
    assert result.stderr == f"error: {cfg}: invalid YAML at line {line}: {problem}\n"


def test_log_timestamps_carry_their_zone(stored: Path) -> None:
    result = run_cli("--config", str(stored), "-v", "status")
    logged = [line for line in result.stderr.splitlines() if " DEBUG " in line]
    assert logged, result.stderr
    for line in logged:
        stamp = line.split(" DEBUG ", 1)[0]
        assert datetime.strptime(stamp, "%Y-%m-%d %H:%M:%S%z").tzinfo is not None, line


# -- snapshotter systemd: what the hardened unit cannot read or write ---------------------


def test_systemd_warns_about_files_the_unit_cannot_reach(tmp_path: Path) -> None:
    private = tmp_path / "totp-secret"
    private.write_text("JBSWY3DPEHPK3PXP\n")
    private.chmod(0o600)
    cfg = write_config(tmp_path / "config.yaml", {
        "database": {"url": "sqlite:////home/alice/snapshots.db"},
        "state_dir": "/srv/snapshotter-state",
        "accounts": [{"user_id": "AB1234", "password_file": "/root/kite-password",
                      "totp_secret_file": str(private)}]})
    cfg.chmod(0o644)
    result = run_cli("--config", str(cfg), "systemd", "--executable", "/usr/bin/snapshotter",
                     env={"SNAPSHOTTER_CONFIG": ""})
    assert result.returncode == 0, result.stderr
    warnings = [line.removeprefix("warning: ") for line in result.stderr.splitlines()]
    where = "(account AB1234)"
    credential = ("give the file's bare name in the config and put it in "
                  "/etc/snapshotter/credentials/ (the unit loads it with LoadCredential=)")
    assert warnings == [
        f"the config {cfg} is hidden from the service (ProtectHome=yes, PrivateTmp=yes): "
        "install it under /usr, /opt or /etc",
        "the database /home/alice/snapshots.db is hidden from the service (ProtectHome=yes, "
        "PrivateTmp=yes): put it under /var/lib/snapshotter",
        "the state_dir /srv/snapshotter-state is read-only to the service "
        "(ProtectSystem=strict): put it under /var/lib/snapshotter, the unit's "
        "StateDirectory",
        f"the credential file /root/kite-password {where} is hidden from the service "
        f"(ProtectHome=yes, PrivateTmp=yes): {credential}",
        f"the credential file {private} {where} is hidden from the service "
        f"(ProtectHome=yes, PrivateTmp=yes): {credential}",
        f"the credential file {private} {where} is readable only by its owner or group "
        "(mode 0600): the service's dynamic user (DynamicUser=yes) cannot read it: "
        f"{credential}",
    ], result.stderr
    named = run_cli("--config", str(cfg), "systemd", "--executable", "/usr/bin/snapshotter",
                    "--user", "snapshotter", env={"SNAPSHOTTER_CONFIG": ""})
    assert "DynamicUser" not in named.stderr and "/root/kite-password" in named.stderr


# -- charts and the empty figures of report performance -----------------------------------


def _svg_texts(svg: Path) -> list[str]:
    """The texts matplotlib writes into an SVG (each one also as a comment)."""
    return [html.unescape(t) for t in
            re.findall(r"<!-- (.*?) -->", svg.read_text(encoding="utf-8"), flags=re.S)]


def _y_tick_sides(svg: Path) -> set[str]:
    """The x positions of every y-axis tick mark: one per side a y-axis is drawn on."""
    text = svg.read_text(encoding="utf-8")
    return set(re.findall(r'<g id="ytick_\d+">.*?<use [^>]*?x="([\d.]+)"', text, flags=re.S))


def _reader_config(tmp_path: Path, db: Path) -> Path:
    return write_config(tmp_path / "reader.yaml", {
        "database": {"url": f"sqlite:///{db}"}, "state_dir": str(tmp_path / "state"),
        "accounts": [{"user_id": "DM0001", "auth": "manual"}]})


def test_the_value_chart_keeps_deposits_apart_on_one_axis_per_panel(tmp_path: Path) -> None:
    demo = run_cli("demo", "--days", "4", "--accounts", "1", "--out", str(tmp_path / "d"),
                   timeout=300)
    assert demo.returncode == 0, demo.stdout + demo.stderr
    cfg = _reader_config(tmp_path, tmp_path / "d" / "demo.db")
    svg = tmp_path / "value.svg"
    result = run_cli("--config", str(cfg), "chart", "--out", str(svg))
    assert result.returncode == 0, result.stderr
    texts = _svg_texts(svg)
    assert "first value + net deposits (no market moves)" in texts
    assert "net deposits" in texts and "cumulative market P&L" in texts
    assert len(_y_tick_sides(svg)) == 1  # every y-axis on the left: no twin scales


def test_one_session_benchmark_chart_and_empty_figures_carry_their_notes(
        tmp_path: Path) -> None:
    demo = run_cli("demo", "--days", "1", "--accounts", "1", "--out", str(tmp_path / "d"),
                   timeout=300)
    assert demo.returncode == 0, demo.stdout + demo.stderr
    cfg = _reader_config(tmp_path, tmp_path / "d" / "demo.db")
    svg = tmp_path / "nav.svg"
    result = run_cli("--config", str(cfg), "chart", "--benchmark", "NIFTY50", "--out", str(svg))
    assert result.returncode == 0, result.stderr
    [note] = [line for line in result.stdout.splitlines() if line.startswith("note: ")]
    assert any(note.removeprefix("note: ") in text for text in _svg_texts(svg)), note

    report = run_cli("--config", str(cfg), "report", "performance", "--benchmark", "NIFTY50",
                     "--format", "json")
    assert report.returncode == 0, report.stderr
    notes = [line.removeprefix("note: ") for line in report.stderr.splitlines()
             if line.startswith("note: ")]
    for row in json.loads(report.stdout):
        for column, value in row.items():
            if value is None:
                assert any(n.startswith(f"{row['account']}: ") and column in n
                           for n in notes), (row["account"], column, notes)


def test_the_simulators_index_has_closes_only_on_nse_sessions(
        database_url: str, tmp_path: Path) -> None:
    from datetime import date, timedelta

    from snapshotter.sessions import TradingCalendar

    cfg = tmp_path / "sim.yaml"
    proc = subprocess.Popen(
        [sys.executable, "-m", "snapshotter", "simulate", "--port", "0", "--accounts", "1",
         "--write-config", str(cfg)], cwd=tmp_path, stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, text=True, stdin=subprocess.DEVNULL)
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline().startswith(f"wrote {cfg}")
        data = yaml.safe_load(cfg.read_text())
        data["database"]["url"] = database_url
        write_config(cfg, data)
        fetched = run_cli("--config", str(cfg), "benchmark", "fetch", "NIFTY50",
                          "--from", "2026-01-01", "--to", "2026-03-31")
        assert fetched.returncode == 0, fetched.stdout + fetched.stderr
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.communicate(timeout=60)
    stored = [str(r["d"])[:10] for r in query_rows(
        database_url, "SELECT date AS d FROM benchmark_daily ORDER BY date")]
    calendar = TradingCalendar()
    days = [date(2026, 1, 1) + timedelta(days=i) for i in range(90)]
    weekdays_closed = [d.isoformat() for d in days if d.weekday() < 5
                       and not calendar.is_session(d)]
    assert weekdays_closed  # e.g. 2026-01-26, Republic Day
    assert not set(weekdays_closed) & set(stored)
    assert stored == [d.isoformat() for d in days if d.weekday() < 5 and calendar.is_session(d)]
