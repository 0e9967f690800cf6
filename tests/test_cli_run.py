"""End to end: the `snapshotter` command against the simulator over real sockets."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
import sqlalchemy as sa

from snapshotter import routes
from snapshotter.kite.token_cache import TokenCache
from snapshotter.routes import ROUTES
from snapshotter.simulator import KiteSimulator, SimAccount
from tests.conftest import config_dict, run_cli, write_config
from tests.conftest import query_rows as _rows

IST = ZoneInfo("Asia/Kolkata")


def _expected(value: Any, kind: str) -> Any:
    """What the database must hold for one raw Kite value (independent of normalize)."""
    if value is None or (isinstance(value, str) and value == ""):
        return None
    if kind == "float":
        return pytest.approx(float(value), abs=1e-6)
    if kind == "datetime":
        return datetime.strptime(value, "%Y-%m-%d %H:%M:%S").replace(tzinfo=IST)
    return value


def _db_value(value: Any, kind: str) -> Any:
    if kind == "datetime" and isinstance(value, str):  # SQLite hands back text
        value = datetime.fromisoformat(value)
    if kind == "datetime" and value is not None and value.tzinfo is None:
        value = value.replace(tzinfo=ZoneInfo("UTC"))
    if kind == "bool" and value is not None:
        return bool(value)
    return value


def _check_rows(stored: list[dict[str, Any]], raw_rows: list[dict[str, Any]],
                fields: dict[str, str], key: tuple[str, ...],
                nested: dict[str, dict[str, str]] | None = None) -> None:
    assert len(stored) == len(raw_rows)
    by_key = {tuple(r[k] for k in key): r for r in stored}
    assert len(by_key) == len(stored)
    for raw in raw_rows:
        row = by_key[tuple(raw[k] for k in key)]
        for name, kind in fields.items():
            assert _db_value(row[name], kind) == _expected(raw.get(name), kind), name
        for parent, children in (nested or {}).items():
            for child, kind in children.items():
                got = _db_value(row[f"{parent}_{child}"], kind)
                assert got == _expected(raw[parent].get(child), kind), f"{parent}.{child}"


def _check_account(url: str, acc: SimAccount, portfolio: dict[str, Any]) -> None:
    q = "SELECT * FROM {} WHERE account = :a"
    _check_rows(_rows(url, q.format("holdings"), a=acc.user_id), portfolio["holdings"],
                routes.HOLDINGS.fields, ("exchange", "tradingsymbol"), routes.HOLDINGS.nested)
    stored_positions = _rows(url, q.format("positions"), a=acc.user_id)
    for ptype in ("net", "day"):
        _check_rows([r for r in stored_positions if r["position_type"] == ptype],
                    portfolio["positions"][ptype], routes.POSITIONS.fields,
                    ("exchange", "tradingsymbol", "product"))
    funds = {r["segment"]: r for r in _rows(url, q.format("funds"), a=acc.user_id)}
    assert set(funds) == set(portfolio["margins"])
    for segment, body in portfolio["margins"].items():
        row = funds[segment]
        assert bool(row["enabled"]) == body["enabled"]
        assert row["net"] == pytest.approx(body["net"], abs=1e-6)
        for part in ("available", "utilised"):
            for leaf, value in body[part].items():
                assert row[leaf] == pytest.approx(value, abs=1e-6), f"{segment}.{part}.{leaf}"
    _check_rows(_rows(url, q.format("mf_holdings"), a=acc.user_id), portfolio["mf_holdings"],
                {k: v for k, v in routes.MF_HOLDINGS.fields.items() if k != "last_price_date"},
                ("folio", "tradingsymbol"))


def test_run_stores_every_field_and_rerun_adds_no_duplicates(
        sim: KiteSimulator, sim_accounts: list[SimAccount], database_url: str,
        tmp_path: Path) -> None:
    cfg = write_config(tmp_path / "config.yaml",
                       config_dict(sim, sim_accounts, database_url, tmp_path / "state"))
    first = run_cli("--config", str(cfg), "run")
    assert first.returncode == 0, first.stderr
    for acc in sim_accounts:
        assert f"{acc.user_id} " in first.stdout
        _check_account(database_url, acc, sim.portfolio(acc.user_id))
    assert all(n == 1 for n in sim.login_count.values()) and len(sim.login_count) == 3

    counts = {t: _rows(database_url, f"SELECT COUNT(*) AS n FROM {t}")[0]["n"]
              for t in (route.table for route in ROUTES)}
    ledger = _rows(database_url, "SELECT * FROM snapshots")
    assert [r["status"] for r in ledger] == ["ok"] * 3

    second = run_cli("--config", str(cfg), "run")
    assert second.returncode == 0, second.stderr
    assert counts == {t: _rows(database_url, f"SELECT COUNT(*) AS n FROM {t}")[0]["n"]
                      for t in counts}
    # A same-day re-run never logs in again: a final snapshot is kept, an intraday one
    # is re-taken with the cached session.
    assert all(n == 1 for n in sim.login_count.values())
    ok = _rows(database_url, "SELECT * FROM snapshots WHERE status = 'ok'")
    assert len(ok) == 3
    if all(r["final"] for r in ledger):
        assert "skipped, final snapshot already stored" in second.stdout
        assert "nothing to do" in second.stdout
    for acc in sim_accounts:
        _check_account(database_url, acc, sim.portfolio(acc.user_id))


def test_wrong_password_fails_fast_for_that_account_only(
        sim: KiteSimulator, sim_accounts: list[SimAccount], database_url: str,
        tmp_path: Path) -> None:
    data = config_dict(sim, sim_accounts, database_url, tmp_path / "state")
    data["accounts"][1]["password"] = "not-the-password"
    bad = sim_accounts[1].user_id
    cfg = write_config(tmp_path / "config.yaml", data)
    result = run_cli("--config", str(cfg), "run")
    assert result.returncode == 78, result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and bad in errors[0] and "password" in errors[0].lower()
    assert "Traceback" not in result.stderr
    logins = [p for m, p, u in sim.requests_log if p == "/api/login" and u == bad]
    assert len(logins) == 1  # never retried
    ledger = {r["account"]: r for r in _rows(database_url, "SELECT * FROM snapshots")}
    assert ledger[bad]["status"] == "failed" and bad in ledger[bad]["error"]
    assert {r["status"] for a, r in ledger.items() if a != bad} == {"ok"}
    assert _rows(database_url, "SELECT COUNT(*) AS n FROM holdings WHERE account = :a",
                 a=bad)[0]["n"] == 0

    # The next scheduled run does not try the rejected credentials again.
    again = run_cli("--config", str(cfg), "run", "--account", bad)
    assert again.returncode == 78
    assert "not trying again" in again.stderr
    assert len([p for m, p, u in sim.requests_log if p == "/api/login" and u == bad]) == 1


def test_secrets_never_reach_output_database_or_logs(
        sim: KiteSimulator, sim_accounts: list[SimAccount], database_url: str,
        tmp_path: Path) -> None:
    cfg = write_config(tmp_path / "config.yaml",
                       config_dict(sim, sim_accounts, database_url, tmp_path / "state"))
    sim.fail_next(2, "503", "/oms/portfolio/holdings")
    result = run_cli("--config", str(cfg), "-v", "run")
    assert result.returncode == 0, result.stderr
    tokens = [TokenCache(tmp_path / "state").load(a.user_id).token for a in sim_accounts]
    assert all(tokens)
    secrets = [s for a in sim_accounts for s in (a.password, a.totp_secret)] + tokens
    dump = result.stdout + result.stderr
    for table in ("snapshots", "holdings", "positions", "funds", "mf_holdings"):
        dump += json.dumps(_rows(database_url, f"SELECT * FROM {table}"), default=str)
    if database_url.startswith("sqlite"):
        dump += Path(database_url.removeprefix("sqlite:///")).read_bytes().decode("latin-1")
    for secret in secrets:
        assert secret not in dump
    for path in (tmp_path / "state").rglob("*"):
        assert path.stat().st_mode & 0o077 == 0, path


def test_expired_session_logs_in_again_once(
        sim: KiteSimulator, sim_accounts: list[SimAccount], database_url: str,
        tmp_path: Path) -> None:
    cfg = write_config(tmp_path / "config.yaml",
                       config_dict(sim, sim_accounts[:1], database_url, tmp_path / "state"))
    user = sim_accounts[0].user_id
    # A cached session that Kite no longer accepts (as after a login elsewhere).
    TokenCache(tmp_path / "state").update(user, mode="web", token="expired-enctoken-123")
    result = run_cli("--config", str(cfg), "run")
    assert result.returncode == 0, result.stderr
    assert "session expired, logging in again" in result.stderr
    assert sim.login_count[user] == 1
    assert TokenCache(tmp_path / "state").load(user).token != "expired-enctoken-123"
    assert len(_rows(database_url, "SELECT * FROM snapshots WHERE status = 'ok'")) == 1


def test_from_raw_rederives_rows(sim: KiteSimulator, sim_accounts: list[SimAccount],
                                 database_url: str, tmp_path: Path) -> None:
    cfg = write_config(tmp_path / "config.yaml",
                       config_dict(sim, sim_accounts, database_url, tmp_path / "state"))
    assert run_cli("--config", str(cfg), "run").returncode == 0
    engine = sa.create_engine(database_url)
    with engine.begin() as conn:
        conn.execute(sa.text("DELETE FROM holdings"))
    engine.dispose()
    logins = dict(sim.login_count)
    result = run_cli("--config", str(cfg), "run", "--from-raw")
    assert result.returncode == 0, result.stderr
    assert "replayed 3 snapshot(s)" in result.stdout
    assert sim.login_count == logins  # offline
    for acc in sim_accounts:
        _check_account(database_url, acc, sim.portfolio(acc.user_id))


def test_db_upgrade_command(tmp_path: Path, database_url: str) -> None:
    cfg = write_config(tmp_path / "config.yaml", {
        "database": {"url": database_url},
        "accounts": [{"user_id": "AB1234", "password": "x",
                      "totp_secret": "JBSWY3DPEHPK3PXPJBSWY3DP"}],
    })
    first = run_cli("--config", str(cfg), "db", "upgrade")
    assert first.returncode == 0 and "migrated" in first.stdout, first.stderr
    second = run_cli("--config", str(cfg), "db", "upgrade")
    assert "already at head" in second.stdout


def test_simulate_command_serves_a_config_that_run_uses(tmp_path: Path) -> None:
    import os
    import signal
    import socket
    import subprocess
    import sys

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    cfg = tmp_path / "sim.yaml"
    proc = subprocess.Popen(
        [sys.executable, "-m", "snapshotter", "simulate", "--port", str(port), "--accounts",
         "2", "--write-config", str(cfg)], cwd=tmp_path, stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, text=True, env={**os.environ})
    try:
        assert proc.stdout is not None
        lines = [proc.stdout.readline() for _ in range(2)]
        assert any(f"127.0.0.1:{port}" in line for line in lines), lines
        assert cfg.stat().st_mode & 0o777 == 0o600
        result = subprocess.run(
            [sys.executable, "-m", "snapshotter", "--config", str(cfg), "--json-logs", "run"],
            cwd=tmp_path, capture_output=True, text=True, timeout=120)
        assert result.returncode == 0, result.stderr
        assert result.stdout.count(": ok, ") == 2
        for line in result.stderr.splitlines():
            entry = json.loads(line)  # --json-logs: every log line is one JSON object
            assert {"time", "level", "message"} <= set(entry)
        assert (tmp_path / "simulated.db").exists()
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.communicate(timeout=30)
    assert proc.returncode == 0


def test_a_rejection_on_one_host_stops_the_other_replicas(
        sim: KiteSimulator, sim_accounts: list[SimAccount], database_url: str,
        tmp_path: Path) -> None:
    """Replicas share the ledger, not their state directories: once Kite rejected the
    credentials, no replica tries the same ones again, until they change."""
    bad = sim_accounts[0]
    configs = {}
    for host in ("a", "b"):
        data = config_dict(sim, [bad], database_url, tmp_path / host / "state")
        data["accounts"][0]["password"] = "wrong-password"
        configs[host] = write_config(tmp_path / f"{host}.yaml", data)
    first = run_cli("--config", str(configs["a"]), "run")
    assert first.returncode == 78, first.stderr

    def logins() -> int:
        return len([p for _, p, u in sim.requests_log if p == "/api/login" and u == bad.user_id])

    assert logins() == 1
    other = run_cli("--config", str(configs["b"]), "run")
    assert other.returncode == 78 and "not trying again" in other.stderr
    assert logins() == 1  # the other host did not try the rejected password

    fixed = config_dict(sim, [bad], database_url, tmp_path / "b" / "state")
    write_config(configs["b"], fixed)
    again = run_cli("--config", str(configs["b"]), "run")
    assert again.returncode == 0, again.stderr
    assert logins() == 2 and sim.login_count[bad.user_id] == 1


def test_simulate_write_config_never_overwrites_a_file_silently(tmp_path: Path) -> None:
    cfg = tmp_path / "config.yaml"
    cfg.write_text("database: {url: 'sqlite:///mine.db'}\n")  # say, the user's real config
    refused = run_cli("simulate", "--port", "0", "--write-config", str(cfg), timeout=60)
    assert refused.returncode == 2, refused.stderr
    assert refused.stderr.strip().splitlines() == [
        f"error: {cfg} exists; not overwriting it (add --force to replace it)"]
    assert cfg.read_text() == "database: {url: 'sqlite:///mine.db'}\n"
    forced = subprocess.Popen(
        [sys.executable, "-m", "snapshotter", "simulate", "--port", "0", "--write-config",
         str(cfg), "--force"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert forced.stdout is not None
        assert forced.stdout.readline().startswith(f"wrote {cfg} (mode 0600)")
        assert "simulator accounts, not real ones" in cfg.read_text()
    finally:
        forced.send_signal(signal.SIGTERM)
        forced.communicate(timeout=30)
