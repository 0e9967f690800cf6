"""Answers that parse but are wrong, and data only one database would take, through the
real `snapshotter` command against the simulator (issue 8, sections 3 and 4)."""

from __future__ import annotations

import gzip
import json
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from snapshotter.routes import ROUTES
from snapshotter.sessions import TradingCalendar, utc_now
from snapshotter.simulator import KiteSimulator, SimAccount
from tests.conftest import config_dict, run_cli, write_config

DATA_TABLES = (*(route.table for route in ROUTES), "snapshot_totals", "snapshot_nav")


def _engine(url: str) -> sa.Engine:
    return sa.create_engine(url.replace("postgresql://", "postgresql+psycopg://"))


def _rows(url: str, sql: str, **params: Any) -> list[dict[str, Any]]:
    engine = _engine(url)
    try:
        with engine.connect() as conn:
            return [dict(r) for r in conn.execute(sa.text(sql), params).mappings()]
    finally:
        engine.dispose()


def _execute(url: str, sql: str, **params: Any) -> None:
    engine = _engine(url)
    try:
        with engine.begin() as conn:
            conn.execute(sa.text(sql), params)
    finally:
        engine.dispose()


def _ledger(url: str, account: str) -> list[dict[str, Any]]:
    return _rows(url, "SELECT * FROM snapshots WHERE account = :a ORDER BY id", a=account)


def _one_account(sim: KiteSimulator, accounts: list[SimAccount], database_url: str,
                 tmp_path: Path) -> tuple[Path, SimAccount, list[dict[str, Any]]]:
    acc = accounts[0]
    cfg = write_config(tmp_path / "config.yaml",
                       config_dict(sim, [acc], database_url, tmp_path / "state"))
    return cfg, acc, sim.portfolio(acc.user_id)["holdings"]


def _label(holding: dict[str, Any]) -> str:
    return f"holdings {holding['exchange']}:{holding['tradingsymbol']}"


def _no_database_text(output: str) -> None:
    for leak in ("Traceback", "[SQL", "IntegrityError", "psycopg", "sqlite3", "UNIQUE"):
        assert leak not in output, output


def _session_day() -> str:
    return TradingCalendar().latest_opened(utc_now()).day.isoformat()


def test_null_last_price_is_flagged_not_final_and_valued_at_close(
        sim: KiteSimulator, sim_accounts: list[SimAccount], database_url: str,
        tmp_path: Path) -> None:
    cfg, acc, holdings = _one_account(sim, sim_accounts, database_url, tmp_path)
    user, held = acc.user_id, holdings[0]
    held["last_price"] = None
    fund = {"folio": "9100000001", "fund": "An index fund", "tradingsymbol": "INF000X01",
            "average_price": 50.0, "last_price": None, "last_price_date": "",
            "pledged_quantity": 0, "pnl": 0, "quantity": 10.0}
    sim.portfolio(user)["mf_holdings"].append(fund)

    run = run_cli("--config", str(cfg), "run")
    assert run.returncode == 0, run.stderr
    price_warning = (f"account {user}: {_label(held)} has no last_price "
                     "(valued at close_price)")
    fund_warning = (f"account {user}: mf_holdings INF000X01 (folio 9100000001) has no "
                    "last_price (valued at average_price)")
    assert f"warning: {price_warning}" in run.stderr.splitlines()
    assert f"warning: {fund_warning}" in run.stderr.splitlines()
    assert "not final because of the warning" in run.stdout
    [snap] = _ledger(database_url, user)
    assert (snap["status"], bool(snap["final"])) == ("ok", False)
    assert snap["warnings"].splitlines() == sorted([price_warning, fund_warning])

    # Stored NULL, valued at the close: no false loss in any view.
    [row] = _rows(database_url, "SELECT last_price FROM holdings WHERE tradingsymbol = :s",
                  s=held["tradingsymbol"])
    assert row["last_price"] is None
    [daily] = _rows(database_url, "SELECT price, value, day_pnl FROM holding_daily "
                    "WHERE tradingsymbol = :s", s=held["tradingsymbol"])
    quantity = held["quantity"] + held["t1_quantity"]
    assert daily["price"] == pytest.approx(held["close_price"])
    assert daily["value"] == pytest.approx(quantity * held["close_price"])
    assert daily["day_pnl"] == pytest.approx(0)
    [totals] = _rows(database_url, "SELECT holdings_value, holdings_day_pnl, mf_value "
                     "FROM portfolio_daily")
    valued = [h["last_price"] if h["last_price"] is not None else h["close_price"]
              for h in holdings]
    assert totals["holdings_value"] == pytest.approx(sum(
        (h["quantity"] + h["t1_quantity"]) * v for h, v in zip(holdings, valued, strict=True)),
        abs=1e-3)
    assert totals["holdings_day_pnl"] == pytest.approx(sum(
        (h["quantity"] + h["t1_quantity"]) * (v - h["close_price"])
        for h, v in zip(holdings, valued, strict=True)), abs=1e-3)
    funds = sim.portfolio(user)["mf_holdings"]
    assert totals["mf_value"] == pytest.approx(sum(
        f["quantity"] * (f["last_price"] if f["last_price"] is not None else f["average_price"])
        for f in funds), abs=1e-3)

    status = run_cli("--config", str(cfg), "status")
    assert status.returncode == 1, status.stdout + status.stderr
    assert f"warning: {price_warning}" in status.stdout.splitlines()
    assert f"warning: {fund_warning}" in status.stdout.splitlines()
    assert "(not final, " in status.stdout and "2 warnings)" in status.stdout

    table = run_cli("--config", str(cfg), "report", "summary")
    assert table.returncode == 0, table.stderr
    assert "warnings" in table.stdout.splitlines()[0] and "2 (see status)" in table.stdout
    [summary] = json.loads(run_cli("--config", str(cfg), "report", "summary", "--format",
                                   "json").stdout)
    assert summary["warnings"].splitlines() == sorted([price_warning, fund_warning])

    # Not final: the next run fetches again (not 30 minutes later: still not final).
    again = run_cli("--config", str(cfg), "run")
    assert again.returncode == 0, again.stderr
    assert "skipped" not in again.stdout and "not final because" in again.stdout
    assert [(r["status"], bool(r["final"])) for r in _ledger(database_url, user)] == [
        ("superseded", False), ("ok", False)]


def test_holdings_that_empty_or_halve_overnight_are_flagged(
        sim: KiteSimulator, sim_accounts: list[SimAccount], database_url: str,
        tmp_path: Path) -> None:
    cfg, acc, holdings = _one_account(sim, sim_accounts, database_url, tmp_path)
    user, count = acc.user_id, len(holdings)
    assert count >= 5
    day = _session_day()
    first = run_cli("--config", str(cfg), "run")
    assert first.returncode == 0, first.stderr
    assert "warning" not in first.stderr
    if _session_day() != day:
        pytest.skip("a session opened during the test")
    # That snapshot becomes the previous session's (as if taken yesterday).
    previous = TradingCalendar().previous_session(TradingCalendar().latest_opened(
        utc_now()).day).day
    for table in ("snapshots", *DATA_TABLES):
        _execute(database_url, f"UPDATE {table} SET snapshot_date = :d", d=previous)

    symbols = [f"{h['exchange']}:{h['tradingsymbol']}" for h in holdings]
    sim.portfolio(user)["holdings"] = []
    emptied = run_cli("--config", str(cfg), "run")
    assert emptied.returncode == 0, emptied.stderr
    gone = ", ".join(symbols[:5]) + (f" and {count - 5} more" if count > 5 else "")
    warning = f"account {user}: holdings went from {count} rows on {previous} to 0 (gone: {gone})"
    assert f"warning: {warning}" in emptied.stderr.splitlines(), emptied.stderr
    assert "not final because of the warning" in emptied.stdout
    latest = _ledger(database_url, user)[-1]
    assert (latest["status"], bool(latest["final"]), latest["warnings"]) == (
        "ok", False, warning)
    status = run_cli("--config", str(cfg), "status")
    assert status.returncode == 1 and f"warning: {warning}" in status.stdout, status.stdout

    sim.portfolio(user)["holdings"] = holdings[:2]  # lost more than half of them
    halved = run_cli("--config", str(cfg), "run")
    assert halved.returncode == 0, halved.stderr
    assert f"holdings went from {count} rows on {previous} to 2 (gone: " in halved.stderr
    assert symbols[0] not in halved.stderr.split("(gone: ")[1]

    sim.portfolio(user)["holdings"] = holdings[:-2]  # a normal day's sales: no warning
    normal = run_cli("--config", str(cfg), "run")
    assert normal.returncode == 0 and "warning" not in normal.stderr, normal.stderr
    assert _ledger(database_url, user)[-1]["warnings"] is None


def test_identical_duplicates_collapse_conflicting_ones_fail_naming_the_key(
        sim: KiteSimulator, sim_accounts: list[SimAccount], database_url: str,
        tmp_path: Path) -> None:
    cfg, acc, holdings = _one_account(sim, sim_accounts, database_url, tmp_path)
    user, count = acc.user_id, len(holdings)
    holdings.append(dict(holdings[0]))
    run = run_cli("--config", str(cfg), "run")
    assert run.returncode == 0, run.stderr
    warning = f"account {user}: {_label(holdings[0])} listed 2 times, identical (stored once)"
    assert f"warning: {warning}" in run.stderr.splitlines()
    assert _ledger(database_url, user)[-1]["warnings"] == warning
    stored = _rows(database_url, "SELECT COUNT(*) AS n FROM holdings")[0]["n"]
    assert stored == count

    holdings[-1] = {**holdings[0], "quantity": holdings[0]["quantity"] + 1}
    conflict = run_cli("--config", str(cfg), "run")
    assert conflict.returncode == 1
    errors = [line for line in conflict.stderr.splitlines() if line.startswith("error:")]
    assert errors == [f"error: account {user}: {_label(holdings[0])} twice with different "
                      "quantities"], conflict.stderr
    _no_database_text(conflict.stderr)
    ledger = _ledger(database_url, user)
    assert [r["status"] for r in ledger] == ["ok", "failed"]
    assert _rows(database_url, "SELECT COUNT(*) AS n FROM holdings")[0]["n"] == count
    # The failed attempt keeps the answers it got.
    kept = _rows(database_url, "SELECT name FROM raw_payloads WHERE snapshot_id = :i",
                 i=ledger[-1]["id"])
    assert {r["name"] for r in kept} == {route.name for route in ROUTES}


def _raw_holdings(url: str, snapshot_id: int) -> list[dict[str, Any]]:
    [row] = _rows(url, "SELECT body FROM raw_payloads WHERE snapshot_id = :i AND "
                  "name = 'holdings'", i=snapshot_id)
    return list(json.loads(gzip.decompress(bytes(row["body"]))))


def _rewrite_raw_holdings(url: str, snapshot_id: int, body: list[dict[str, Any]]) -> None:
    data = gzip.compress(json.dumps(body).encode(), mtime=0)
    _execute(url, "UPDATE raw_payloads SET body = :b WHERE snapshot_id = :i AND "
             "name = 'holdings'", b=data, i=snapshot_id)


def test_from_raw_recovers_a_failed_attempt_once_its_payloads_normalize(
        sim: KiteSimulator, sim_accounts: list[SimAccount], database_url: str,
        tmp_path: Path) -> None:
    """A conflicting duplicate fails the attempt; its payloads are kept. Once they
    normalize (here: the duplicate fixed in the stored payload, as a normalization fix
    would), `run --from-raw` turns the attempt into the session's snapshot, with its
    original taken_at, replacing the earlier one."""
    cfg, acc, holdings = _one_account(sim, sim_accounts, database_url, tmp_path)
    user, count = acc.user_id, len(holdings)
    assert run_cli("--config", str(cfg), "run").returncode == 0
    holdings[0]["last_price"] += 10  # the later answer differs: it must be the one kept
    holdings.append({**holdings[0], "quantity": holdings[0]["quantity"] + 1})
    assert run_cli("--config", str(cfg), "run", "--force").returncode == 1
    earlier, failed = _ledger(database_url, user)
    assert failed["status"] == "failed" and failed["error"]

    body = _raw_holdings(database_url, failed["id"])
    assert len(body) == count + 1
    body[-1] = dict(body[0])
    _rewrite_raw_holdings(database_url, failed["id"], body)
    logins = dict(sim.login_count)
    replay = run_cli("--config", str(cfg), "run", "--from-raw")
    assert replay.returncode == 0, replay.stderr
    assert sim.login_count == logins  # offline
    assert "recovered the failed attempt" in replay.stderr
    assert "replayed 2 snapshot(s)" in replay.stdout
    after = {r["id"]: r for r in _ledger(database_url, user)}
    assert after[earlier["id"]]["status"] == "superseded"
    recovered = after[failed["id"]]
    assert recovered["status"] == "ok" and recovered["error"] is None
    assert recovered["taken_at"] == failed["taken_at"]
    assert recovered["holdings_count"] == count
    assert "listed 2 times, identical" in recovered["warnings"]
    [price] = _rows(database_url, "SELECT last_price FROM holdings WHERE snapshot_id = :i "
                    "AND tradingsymbol = :s", i=failed["id"], s=holdings[0]["tradingsymbol"])
    assert price["last_price"] == pytest.approx(holdings[0]["last_price"])
    assert len(_rows(database_url, "SELECT * FROM portfolio_daily")) == 1


def test_from_raw_keeps_a_later_complete_snapshot(
        sim: KiteSimulator, sim_accounts: list[SimAccount], database_url: str,
        tmp_path: Path) -> None:
    cfg, acc, holdings = _one_account(sim, sim_accounts, database_url, tmp_path)
    user = acc.user_id
    holdings.append({**holdings[0], "quantity": holdings[0]["quantity"] + 1})
    assert run_cli("--config", str(cfg), "run").returncode == 1
    holdings.pop()
    assert run_cli("--config", str(cfg), "run").returncode == 0
    failed, later = _ledger(database_url, user)
    body = _raw_holdings(database_url, failed["id"])
    body[-1] = dict(body[0])
    _rewrite_raw_holdings(database_url, failed["id"], body)
    replay = run_cli("--config", str(cfg), "run", "--from-raw")
    assert replay.returncode == 0, replay.stderr
    assert [(r["id"], r["status"]) for r in _ledger(database_url, user)] == [
        (failed["id"], "failed"), (later["id"], "ok")]


def test_nul_and_nan_are_stored_alike_on_both_databases(
        sim: KiteSimulator, sim_accounts: list[SimAccount], database_url: str,
        tmp_path: Path) -> None:
    cfg, _, holdings = _one_account(sim, sim_accounts, database_url, tmp_path)
    holdings[0]["tradingsymbol"] = "NUL\x00SYMBOL"
    holdings[1]["new_kite_field"] = {"ratio": float("nan"), "cap": float("inf"),
                                     "floor": float("-inf"), "note": "a\x00b",
                                     "ke\x00y": [1.5, float("nan")]}
    run = run_cli("--config", str(cfg), "run")
    assert run.returncode == 0, run.stderr
    _no_database_text(run.stderr)
    symbols = {r["tradingsymbol"] for r in _rows(database_url, "SELECT * FROM holdings")}
    assert "NUL\ufffdSYMBOL" in symbols
    valid = ("SELECT COUNT(*) AS n FROM holdings WHERE extra IS NOT NULL AND "
             + ("json_valid(extra)" if database_url.startswith("sqlite")
                else "extra::jsonb IS NOT NULL"))
    assert _rows(database_url, valid)[0]["n"] == len(holdings)
    sql = ("SELECT json_extract(extra, '$.new_kite_field') AS f FROM holdings"
           if database_url.startswith("sqlite")
           else "SELECT (extra::jsonb -> 'new_kite_field')::text AS f FROM holdings")
    [field] = [json.loads(r["f"]) for r in _rows(database_url, sql) if r["f"]]
    assert field == {"ratio": None, "cap": None, "floor": None, "note": "a\ufffdb",
                     "ke\ufffdy": [1.5, None]}


def test_a_key_too_long_for_an_index_is_a_payload_error(
        sim: KiteSimulator, sim_accounts: list[SimAccount], database_url: str,
        tmp_path: Path) -> None:
    cfg, acc, holdings = _one_account(sim, sim_accounts, database_url, tmp_path)
    holdings[2]["tradingsymbol"] = "X" * 300
    run = run_cli("--config", str(cfg), "run")
    assert run.returncode == 1
    errors = [line for line in run.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, run.stderr
    assert errors[0].startswith(f"error: account {acc.user_id}: holdings record 3 (")
    assert "tradingsymbol is 300 characters long, more than the 256" in errors[0]
    _no_database_text(run.stderr)
    assert [r["status"] for r in _ledger(database_url, acc.user_id)] == ["failed"]
    assert _rows(database_url, "SELECT COUNT(*) AS n FROM holdings")[0]["n"] == 0


def test_a_row_the_database_refuses_is_one_line_without_its_text(
        sim: KiteSimulator, sim_accounts: list[SimAccount], database_url: str,
        tmp_path: Path) -> None:
    """A refusal nobody foresaw (here a trigger a DBA added): the account, the table,
    the kind of error; never the database's message (it can quote the data)."""
    cfg, acc, holdings = _one_account(sim, sim_accounts, database_url, tmp_path)
    assert run_cli("--config", str(cfg), "db", "upgrade").returncode == 0
    if database_url.startswith("sqlite"):
        _execute(database_url, "CREATE TRIGGER no_big BEFORE INSERT ON holdings "
                 "WHEN NEW.quantity > 99999999 BEGIN SELECT RAISE(ABORT, 'secret detail'); END")
    else:
        _execute(database_url, "CREATE FUNCTION no_big() RETURNS trigger LANGUAGE plpgsql AS "
                 "$$ BEGIN IF NEW.quantity > 99999999 THEN RAISE EXCEPTION 'secret detail'; "
                 "END IF; RETURN NEW; END $$")
        _execute(database_url, "CREATE TRIGGER no_big BEFORE INSERT ON holdings "
                 "FOR EACH ROW EXECUTE FUNCTION no_big()")
    holdings[0]["quantity"] = 100000000
    run = run_cli("--config", str(cfg), "run")
    assert run.returncode == 1
    errors = [line for line in run.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and errors[0].startswith(
        f"error: account {acc.user_id}: could not store holdings: the database refused a row ("
    ), run.stderr
    assert "secret detail" not in run.stderr + run.stdout
    [failed] = _ledger(database_url, acc.user_id)
    assert failed["status"] == "failed" and "secret detail" not in failed["error"]
