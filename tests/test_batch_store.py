"""Issue 20: accounts that finish together are stored in one transaction (a batch), and
each account stays atomic: a hostile account in a batch fails alone, a kill -9 in the
middle of a batch leaves no partial snapshot of any account; a daily run against a
database at head loads neither Alembic nor the Console/import code."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
from concurrent.futures import Future
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import sqlalchemy as sa

from snapshotter.config import AccountConfig, load_config
from snapshotter.normalize import (
    Normalized,
    PayloadError,
    frame_records,
    normalize_snapshot,
    normalize_snapshots,
)
from snapshotter.pipeline.outcomes import FAILED, OK
from snapshotter.pipeline.storing import Ended, RunDatabase, store_ended
from snapshotter.sessions import IST, Session
from snapshotter.simulator import KiteSimulator, SimAccount, demo_accounts, make_portfolio
from snapshotter.store import migrate
from snapshotter.store.engine import make_engine, normalize_url
from tests.conftest import config_dict, query_rows, run_cli, wait_until, write_config

HOSTILE_QUANTITY = 100_000_000
DAY = date(2026, 11, 27)


def _execute(url: str, *statements: str) -> None:
    engine = sa.create_engine(normalize_url(url))
    try:
        with engine.begin() as conn:
            for sql in statements:
                conn.execute(sa.text(sql))
    finally:
        engine.dispose()


def _refuse_big_quantities(url: str) -> None:
    """A refusal nobody foresaw (a trigger a DBA added): rows normalize lets through."""
    if url.startswith("sqlite"):
        _execute(url, "CREATE TRIGGER no_big BEFORE INSERT ON holdings WHEN NEW.quantity > "
                 f"{HOSTILE_QUANTITY - 1} BEGIN SELECT RAISE(ABORT, 'secret detail'); END")
    else:
        _execute(url, "CREATE FUNCTION no_big() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
                 f"IF NEW.quantity > {HOSTILE_QUANTITY - 1} THEN RAISE EXCEPTION "
                 "'secret detail'; END IF; RETURN NEW; END $$",
                 "CREATE TRIGGER no_big BEFORE INSERT ON holdings FOR EACH ROW EXECUTE "
                 "FUNCTION no_big()")


def _complete(url: str, account: str) -> bool:
    """The account has one complete snapshot with all its parts: ledger row, totals,
    NAV, raw payloads and as many data rows as the ledger counts."""
    [snap] = query_rows(url, "SELECT * FROM snapshots WHERE account = :a AND status = 'ok'",
                        a=account) or [None]
    if snap is None:
        return False
    parts = query_rows(url, "SELECT (SELECT COUNT(*) FROM snapshot_totals WHERE snapshot_id = "
                       ":i) AS totals, (SELECT COUNT(*) FROM snapshot_nav WHERE snapshot_id "
                       "= :i) AS nav, (SELECT COUNT(*) FROM raw_payloads WHERE snapshot_id = "
                       ":i) AS raw, (SELECT COUNT(*) FROM holdings WHERE snapshot_id = :i) "
                       "AS holdings", i=snap["id"])[0]
    return (parts["totals"], parts["nav"], parts["raw"], parts["holdings"]) == (
        1, 1, 4, snap["holdings_count"])


def _stored_rows(url: str) -> dict[str, int]:
    tables = ("holdings", "positions", "funds", "mf_holdings", "snapshot_totals",
              "snapshot_nav", "raw_payloads")
    counts = {t: query_rows(url, f"SELECT COUNT(*) AS n FROM {t}")[0]["n"] for t in tables}
    counts["ok"] = query_rows(url, "SELECT COUNT(*) AS n FROM snapshots "
                              "WHERE status = 'ok'")[0]["n"]
    return counts


@pytest.fixture
def accounts() -> list[SimAccount]:
    return demo_accounts(6, seed=11)


def test_a_hostile_account_in_a_batch_fails_alone(accounts: list[SimAccount],
                                                  database_url: str, tmp_path: Path) -> None:
    """The store, given six finished fetches at once (as a run's poll finds them): one
    batch; the database refuses one account's row, so the batch is rolled back and each
    account stored on its own: five complete snapshots and one failed attempt."""
    with KiteSimulator(accounts) as sim:
        cfg = write_config(tmp_path / "config.yaml", config_dict(
            sim, accounts, database_url, tmp_path / "state"))
        assert run_cli("--config", str(cfg), "db", "upgrade").returncode == 0
        _refuse_big_quantities(database_url)
        config = load_config(cfg)
        hostile = accounts[2].user_id
        ended = []
        for acc in config.accounts:
            payloads = sim.portfolio(acc.user_id)
            answers = {name: json.loads(json.dumps(payloads[name])) for name in
                       ("holdings", "positions", "margins", "mf_holdings")}
            if acc.user_id == hostile:
                answers["holdings"][0]["quantity"] = HOSTILE_QUANTITY
            future: Future[Any] = Future()
            future.set_result((answers, 1))
            ended.append(Ended(acc, datetime.now(UTC), 0.0, future))
    day = datetime.now(IST).date()
    session = Session(day, datetime.combine(day, datetime.min.time(), IST),
                      datetime.combine(day, datetime.min.time(), IST))
    engine = make_engine(database_url)
    try:
        outcomes = store_ended(engine, ended, session, state_dir=tmp_path / "state",
                               database=RunDatabase(database_url))
    finally:
        engine.dispose()
    assert [o.account for o in outcomes] == [a.user_id for a in accounts]
    by_account = {o.account: o for o in outcomes}
    assert by_account[hostile].status == FAILED
    assert by_account[hostile].error == (f"account {hostile}: could not store holdings: the "
                                         "database refused a row (" + (
        "IntegrityError)" if database_url.startswith("sqlite") else
        "RaiseException, SQLSTATE P0001)"))
    for acc in accounts:
        if acc.user_id != hostile:
            assert by_account[acc.user_id].status == OK
            assert _complete(database_url, acc.user_id), acc.user_id
    assert not _complete(database_url, hostile)
    [failed] = query_rows(database_url, "SELECT * FROM snapshots WHERE account = :a", a=hostile)
    assert failed["status"] == "failed" and "secret detail" not in failed["error"]


def test_a_run_with_a_hostile_account_stores_the_others(
        accounts: list[SimAccount], database_url: str, tmp_path: Path) -> None:
    """The same through `snapshotter run`: every account fetched at once; the hostile
    one is one error line, the others are stored whole."""
    with KiteSimulator(accounts) as sim:
        cfg = write_config(tmp_path / "config.yaml", config_dict(
            sim, accounts, database_url, tmp_path / "state",
            kite={"base_url": sim.base_url, "api_root": sim.base_url, "concurrency": 6}))
        assert run_cli("--config", str(cfg), "db", "upgrade").returncode == 0
        _refuse_big_quantities(database_url)
        hostile = accounts[4].user_id
        sim.portfolio(hostile)["holdings"][0]["quantity"] = HOSTILE_QUANTITY
        run = run_cli("--config", str(cfg), "run")
    assert run.returncode == 1, run.stderr
    errors = [line for line in run.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and errors[0].startswith(
        f"error: account {hostile}: could not store holdings: the database refused a row ("
    ), run.stderr
    assert "secret detail" not in run.stderr + run.stdout
    for acc in accounts:
        assert _complete(database_url, acc.user_id) is (acc.user_id != hostile), acc.user_id


def _slow_raw_payloads(url: str) -> None:
    """Storing a raw payload takes minutes (a trigger): a batch stays open, its ledger
    and data rows written, until the test kills the run."""
    if url.startswith("sqlite"):
        _execute(url, "CREATE TRIGGER slow BEFORE INSERT ON raw_payloads BEGIN "
                 "SELECT COUNT(*) FROM (WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL "
                 "SELECT x + 1 FROM c WHERE x < 2000000000) SELECT x FROM c); END")
    else:
        _execute(url, "CREATE FUNCTION slow() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
                 "PERFORM pg_sleep(600); RETURN NEW; END $$",
                 "CREATE TRIGGER slow BEFORE INSERT ON raw_payloads FOR EACH ROW EXECUTE "
                 "FUNCTION slow()")


def _batch_in_progress(url: str) -> bool:
    """A transaction of the run is writing: PostgreSQL shows its backend in the
    trigger's sleep; SQLite's write lock is held (no other writer is left once every
    account has fetched)."""
    if not url.startswith("sqlite"):
        return bool(query_rows(url, "SELECT pid FROM pg_stat_activity WHERE "
                                    "wait_event = 'PgSleep' AND datname = current_database()"))
    path = sa.make_url(url).database
    import sqlite3

    conn = sqlite3.connect(str(path), timeout=0, isolation_level=None)
    try:
        conn.execute("BEGIN IMMEDIATE")
        conn.execute("ROLLBACK")
        return False
    except sqlite3.OperationalError as exc:
        return "locked" in str(exc)
    finally:
        conn.close()


def test_kill_9_mid_batch_leaves_no_partial_snapshot(accounts: list[SimAccount],
                                                     database_url: str,
                                                     tmp_path: Path) -> None:
    """Six accounts fetched at once, stored together; the run is killed (SIGKILL) while
    the batch's transaction is open (its rows written, the raw payloads being stored):
    no snapshot of any account is left, whole or in part; the next run stores all six."""
    with KiteSimulator(accounts) as sim:
        cfg = write_config(tmp_path / "config.yaml", config_dict(
            sim, accounts, database_url, tmp_path / "state",
            kite={"base_url": sim.base_url, "api_root": sim.base_url, "concurrency": 6}))
        assert run_cli("--config", str(cfg), "db", "upgrade").returncode == 0
        _slow_raw_payloads(database_url)
        run = subprocess.Popen([sys.executable, "-m", "snapshotter", "--config", str(cfg),
                                "run"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               text=True, stdin=subprocess.DEVNULL)
        try:
            fetched = 6 * len(accounts)  # login, 2FA, 4 data routes
            wait_until(lambda: len(sim.requests_log) >= fetched and sim.in_flight == 0,
                       "every account fetched", alive=run)
            wait_until(lambda: _batch_in_progress(database_url), "a batch being stored",
                       alive=run)
            os.kill(run.pid, signal.SIGKILL)
        finally:
            run.kill()
            run.communicate()
        assert run.returncode == -signal.SIGKILL
        if not database_url.startswith("sqlite"):  # its backend notices the client gone
            _execute(database_url, "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                     "WHERE wait_event = 'PgSleep' AND datname = current_database()")
        wait_until(lambda: not _batch_in_progress(database_url), "the killed batch undone")
        assert _stored_rows(database_url) == dict.fromkeys(
            ("holdings", "positions", "funds", "mf_holdings", "snapshot_totals",
             "snapshot_nav", "raw_payloads", "ok"), 0)
        _execute(database_url, "DROP TRIGGER slow" if database_url.startswith("sqlite")
                 else "DROP TRIGGER slow ON raw_payloads")
        again = run_cli("--config", str(cfg), "run")
    assert again.returncode == 0, again.stderr
    for acc in accounts:
        assert _complete(database_url, acc.user_id), acc.user_id


def _loaded(importtime: str) -> set[str]:
    return {line.split("|")[-1].strip() for line in importtime.splitlines()
            if line.startswith("import time:")}


def test_daily_run_at_head_loads_neither_alembic_nor_import_code(
        accounts: list[SimAccount], database_url: str, tmp_path: Path) -> None:
    """`run` against a database at head (the daily case): no Alembic, no Console
    parsing, no import pipeline, and without a proxy to choose no requests (libcurl
    sends Kite's requests; python -X importtime lists every module loaded)."""
    no_proxy = {name: value for name, value in os.environ.items()
                if not name.lower().endswith("_proxy") or name.lower() == "no_proxy"}
    with KiteSimulator(accounts[:2]) as sim:
        cfg = write_config(tmp_path / "config.yaml", config_dict(
            sim, accounts[:2], database_url, tmp_path / "state"))
        assert run_cli("--config", str(cfg), "db", "upgrade").returncode == 0
        run = subprocess.run([sys.executable, "-X", "importtime", "-m", "snapshotter",
                              "--config", str(cfg), "run"], capture_output=True, text=True,
                             stdin=subprocess.DEVNULL, timeout=300, env=no_proxy)
    assert run.returncode == 0, run.stderr
    assert f"{accounts[0].user_id} " in run.stdout
    loaded = _loaded(run.stderr)
    assert "snapshotter.pipeline.storing" in loaded  # the listing is whole
    for module in ("alembic", "snapshotter.console", "snapshotter.pipeline.imports",
                   "snapshotter.store.imports", "requests", "urllib3"):
        assert module not in loaded, module


def test_a_fresh_database_is_migrated_by_run(accounts: list[SimAccount], database_url: str,
                                             tmp_path: Path) -> None:
    """Alembic is loaded when it has work: the first run creates the schema."""
    with KiteSimulator(accounts[:1]) as sim:
        cfg = write_config(tmp_path / "config.yaml", config_dict(
            sim, accounts[:1], database_url, tmp_path / "state"))
        run = subprocess.run([sys.executable, "-X", "importtime", "-m", "snapshotter",
                              "--config", str(cfg), "run"], capture_output=True, text=True,
                             stdin=subprocess.DEVNULL, timeout=300)
    assert run.returncode == 0, run.stderr
    assert "alembic" in _loaded(run.stderr)
    assert _complete(database_url, accounts[0].user_id)



def _portfolios() -> list[tuple[dict[str, Any], str]]:
    """Answers of several accounts, as a batch meets them: ordinary ones, an empty one,
    one with holdings that have no last_price (warnings) and unknown fields (extra)."""
    portfolios = [(make_portfolio(seed), f"AB{seed:04d}") for seed in range(5)]
    unpriced = make_portfolio(7)
    unpriced["holdings"][0]["last_price"] = None
    unpriced["holdings"][1]["new_field"] = {"nested": [1, 2]}
    portfolios.append((unpriced, "AB0007"))
    portfolios.append(({"holdings": [], "positions": None, "margins": None,
                        "mf_holdings": []}, "AB0008"))
    return portfolios


def _same(batched: Normalized, alone: Normalized) -> None:
    assert batched.warnings == alone.warnings
    assert set(batched.tables) == set(alone.tables)
    for table, frame in alone.frames.items():
        got = batched.frames[table].reset_index(drop=True)
        pd.testing.assert_frame_equal(got, frame.reset_index(drop=True), check_exact=True)
        assert frame_records(batched.tables[table]) == frame_records(alone.tables[table])


def test_one_pass_normalizes_each_account_as_alone() -> None:
    """normalize_snapshots (one pandas pass over a batch) gives each account the very
    rows, dtypes and warnings normalize_snapshot gives it alone."""
    portfolios = _portfolios()
    batched = normalize_snapshots(portfolios, DAY)
    assert len(batched) == len(portfolios)
    for (payloads, account), found in zip(portfolios, batched, strict=True):
        assert found is not None, account
        _same(found, normalize_snapshot(payloads, account, DAY))
    assert any("has no last_price" in w for w in batched[5].warnings)  # type: ignore[union-attr]


def test_one_pass_leaves_an_account_at_fault_to_normalize_alone() -> None:
    """An account whose answers are not a table, or list a record twice, is None (the
    store normalizes it on its own, naming its record as always); the others are as
    alone. A value no conversion takes leaves every account to normalize alone."""
    portfolios = _portfolios()
    broken = [({**p, "holdings": {"not": "a list"}}, a) if a == "AB0001" else (p, a)
              for p, a in portfolios]
    twice = make_portfolio(3)
    twice["holdings"].append(dict(twice["holdings"][0]))
    broken[3] = (twice, "AB0003")
    batched = normalize_snapshots(broken, DAY)
    assert [found is None for found in batched] == [False, True, False, True, False, False,
                                                    False]
    for (payloads, account), found in zip(broken, batched, strict=True):
        if found is not None:
            _same(found, normalize_snapshot(payloads, account, DAY))
    with pytest.raises(PayloadError, match="expected a list of objects"):
        normalize_snapshot(*broken[1], DAY)
    assert "listed 2 times" in normalize_snapshot(*broken[3], DAY).warnings[0]
    bad_value = make_portfolio(4)
    bad_value["holdings"][0]["quantity"] = "many"
    assert normalize_snapshots([*portfolios[:2], (bad_value, "AB0004")], DAY) == [None] * 3


def _data_rows(url: str) -> dict[str, list[tuple[Any, ...]]]:
    """Every data table's rows with their account, without ids, in a stable order."""
    found = {}
    for table in ("holdings", "positions", "funds", "mf_holdings"):
        rows = query_rows(url, f"SELECT * FROM {table}")
        found[table] = sorted(
            tuple(sorted((k, repr(v)) for k, v in row.items()
                          if k not in ("id", "snapshot_id"))) for row in rows)
    return found


def test_a_batch_stores_what_each_account_alone_stores(database_url: str,
                                                      tmp_path: Path) -> None:
    """Seven accounts' answers through store_ended at once (one pass, one transaction)
    and one by one store the same rows, counts and warnings."""
    portfolios = _portfolios()
    day = DAY
    session = Session(day, datetime.combine(day, datetime.min.time(), IST),
                      datetime.combine(day, datetime.min.time(), IST))
    accounts = [AccountConfig(user_id=a, password=None, totp_secret=None)
                for _, a in portfolios]

    def ended() -> list[Ended]:
        items = []
        for acc, (payloads, _) in zip(accounts, portfolios, strict=True):
            future: Future[Any] = Future()
            future.set_result((json.loads(json.dumps(payloads)), 1))
            items.append(Ended(acc, datetime.now(UTC), 0.0, future))
        return items

    found = {}
    engine = make_engine(database_url)
    try:
        migrate.upgrade(database_url, engine)
        for way in ("batch", "alone"):  # the second replaces the first's rows
            if way == "batch":
                outcomes = store_ended(engine, ended(), session, state_dir=tmp_path,
                                       database=RunDatabase(database_url))
            else:
                outcomes = [o for item in ended() for o in store_ended(
                    engine, [item], session, state_dir=tmp_path,
                    database=RunDatabase(database_url))]
            assert all(o.status == OK for o in outcomes)
            found[way] = ([(o.account, o.counts, o.warnings) for o in outcomes],
                          _data_rows(database_url))
    finally:
        engine.dispose()
    assert found["batch"] == found["alone"]
    assert sum(len(rows) for rows in found["batch"][1].values()) > 50


def test_logins_at_the_same_moment_reserve_their_steps_in_one_commit(
        database_url: str) -> None:
    """GroupReservations: 12 logins asking at once are committed in fewer transactions
    than logins, each answered as reserve_totp_step answers alone (held, or the step
    another process holds), and every step is in totp_steps when its login returns."""
    from snapshotter.store.totp import GroupReservations, reserve_totp_step

    engine = make_engine(database_url)
    try:
        migrate.upgrade(database_url, engine)
        now = datetime.now(UTC)
        reserve_totp_step(engine, "AB0000", 1_000, now=now, holder="other:1")
        commits: list[int] = []
        sa.event.listen(engine, "commit", lambda conn: commits.append(1))
        group = GroupReservations(engine, "this:2")
        first: list[int] = []

        def hold_the_first(*_: Any) -> None:
            """The first batch's transaction waits until the other 11 logins queue."""
            if not first:
                first.append(1)
                wait_until(lambda: len(group._queue) == 11, "the other logins to queue")

        sa.event.listen(engine, "before_cursor_execute", hold_the_first)
        start = threading.Barrier(12)
        answers: dict[str, Any] = {}

        def login(number: int) -> None:
            start.wait()
            account = f"AB{number:04d}"
            answers[account] = group.reserve(account, 1_000, now)
            [row] = query_rows(database_url, "SELECT step, holder FROM totp_steps "
                               "WHERE account = :a", a=account)
            assert row["step"] == 1_000

        threads = [threading.Thread(target=login, args=(n,)) for n in range(12)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    finally:
        engine.dispose()
    assert answers == {"AB0000": 1_000, **{f"AB{n:04d}": None for n in range(1, 12)}}
    assert len(commits) == 2  # the first login's step, then the 11 that queued meanwhile
    holders = {r["account"]: r["holder"] for r in query_rows(
        database_url, "SELECT account, holder FROM totp_steps")}
    assert holders["AB0000"] == "other:1" and holders["AB0011"] == "this:2"
