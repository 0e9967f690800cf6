"""The snapshot job with an injected clock: sessions, final vs intraday, replace, atomicity."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
import sqlalchemy as sa

from snapshotter import pipeline
from snapshotter.config import Config, parse_config
from snapshotter.sessions import ManualClock
from snapshotter.simulator import KiteSimulator, SimAccount
from snapshotter.store import engine as db
from snapshotter.store import migrate
from tests.conftest import config_dict

IST = ZoneInfo("Asia/Kolkata")



@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(datetime(2026, 11, 27, 11, 0, tzinfo=IST))


@pytest.fixture
def clocked_sim(sim_accounts: list[SimAccount], clock: ManualClock) -> Iterator[KiteSimulator]:
    with KiteSimulator(sim_accounts, clock=clock) as server:
        yield server


@pytest.fixture
def setup(clocked_sim: KiteSimulator, sim_accounts: list[SimAccount], database_url: str,
          tmp_path: Path) -> Iterator[tuple[Config, sa.Engine]]:
    config = parse_config(config_dict(clocked_sim, sim_accounts, database_url,
                                      tmp_path / "state"))
    engine = db.make_engine(database_url)
    migrate.upgrade(database_url, engine)
    yield config, engine
    engine.dispose()


def _ledger(engine: sa.Engine, account: str) -> list[tuple[str, bool]]:
    with engine.connect() as conn:
        return [(r.status, bool(r.final)) for r in conn.execute(sa.text(
            "SELECT status, final FROM snapshots WHERE account = :a ORDER BY id"), {"a": account})]


def _scalar(engine: sa.Engine, sql: str, **params: object) -> object:
    with engine.connect() as conn:
        return conn.execute(sa.text(sql), params).scalar()


def test_intraday_replaced_then_final_kept(setup: tuple[Config, sa.Engine], clock: ManualClock,
                                           clocked_sim: KiteSimulator,
                                           sim_accounts: list[SimAccount]) -> None:
    config, engine = setup
    user = sim_accounts[0].user_id
    result = pipeline.run_snapshot(config, engine, clock=clock)
    assert result.session.day.isoformat() == "2026-11-27"
    assert {o.status for o in result.outcomes} == {"ok"}
    assert not any(o.final for o in result.outcomes)

    # Later in the session the price moved: a re-run replaces the snapshot, no new login.
    holding = clocked_sim.portfolio(user)["holdings"][0]
    holding["last_price"] = 12345.65
    clock.set("2026-11-27T13:00:00")
    pipeline.run_snapshot(config, engine, clock=clock)
    assert _ledger(engine, user) == [("superseded", False), ("ok", False)]
    assert _scalar(engine, "SELECT last_price FROM holdings WHERE account = :a AND "
                   "tradingsymbol = :s", a=user, s=holding["tradingsymbol"]) == 12345.65
    assert clocked_sim.login_count[user] == 1

    clock.set("2026-11-27T16:30:00")
    after_close = pipeline.run_snapshot(config, engine, clock=clock)
    assert all(o.final for o in after_close.outcomes)
    assert _ledger(engine, user)[-1] == ("ok", True)

    # Saturday: Friday's final snapshot is kept and Kite is not even contacted.
    requests_before = len(clocked_sim.requests_log)
    clock.set("2026-11-28T10:00:00")
    saturday = pipeline.run_snapshot(config, engine, clock=clock)
    assert saturday.session.day.isoformat() == "2026-11-27"
    assert {o.status for o in saturday.outcomes} == {"skipped"}
    assert len(clocked_sim.requests_log) == requests_before
    assert saturday.exit_code == 0

    forced = pipeline.run_snapshot(config, engine, clock=clock, force=True,
                                   accounts=[user.lower()])
    assert [o.status for o in forced.outcomes] == ["ok"]
    assert _scalar(engine, "SELECT COUNT(*) FROM snapshots WHERE status = 'ok' "
                   "AND account = :a", a=user) == 1
    holdings = len(clocked_sim.portfolio(user)["holdings"])
    assert _scalar(engine, "SELECT COUNT(*) FROM holdings WHERE account = :a", a=user) == holdings


@pytest.mark.parametrize(("now", "expected"), [
    ("2026-11-28T10:00:00", "2026-11-27"),  # Saturday files Friday
    ("2026-11-30T08:00:00", "2026-11-27"),  # Monday before the open
    ("2026-11-30T09:20:00", "2026-11-30"),  # Monday after the open
    ("2026-11-24T12:00:00", "2026-11-23"),  # a 2026 NSE holiday (Guru Nanak Jayanti)
])
def test_snapshot_date_is_latest_opened_session(setup: tuple[Config, sa.Engine],
                                                clock: ManualClock, now: str,
                                                expected: str) -> None:
    config, engine = setup
    clock.set(now)
    result = pipeline.run_snapshot(config, engine, clock=clock, accounts=[
        config.accounts[0].user_id])
    assert result.session.day.isoformat() == expected
    assert _scalar(engine, "SELECT COUNT(*) FROM snapshots WHERE snapshot_date = :d",
                   d=result.session.day) == 1


def test_failed_store_keeps_earlier_snapshot_and_other_accounts(
        setup: tuple[Config, sa.Engine], clock: ManualClock, clocked_sim: KiteSimulator,
        sim_accounts: list[SimAccount]) -> None:
    config, engine = setup
    bad = sim_accounts[1].user_id
    pipeline.run_snapshot(config, engine, clock=clock)
    before = _scalar(engine, "SELECT COUNT(*) FROM holdings WHERE account = :a", a=bad)

    # A payload that breaks the natural key (one holding twice, with different
    # quantities): the whole account snapshot must roll back.
    holdings = clocked_sim.portfolio(bad)["holdings"]
    holdings.append({**holdings[0], "quantity": holdings[0]["quantity"] + 1})
    clock.set("2026-11-27T14:00:00")
    result = pipeline.run_snapshot(config, engine, clock=clock)
    outcome = {o.account: o for o in result.outcomes}
    assert outcome[bad].status == "failed" and bad in (outcome[bad].error or "")
    assert {o.status for a, o in outcome.items() if a != bad} == {"ok"}
    assert result.exit_code == 1
    assert _ledger(engine, bad) == [("ok", False), ("failed", False)]
    assert _scalar(engine, "SELECT COUNT(*) FROM holdings WHERE account = :a", a=bad) == before


def test_transient_faults_are_retried(setup: tuple[Config, sa.Engine], clock: ManualClock,
                                      clocked_sim: KiteSimulator) -> None:
    config, engine = setup
    clocked_sim.fail_next(1, "html", "/oms/user/margins")
    clocked_sim.fail_next(1, "429", "/oms/mf/holdings")
    clocked_sim.fail_next(1, "502", "/api/login")
    result = pipeline.run_snapshot(config, engine, clock=clock)
    assert {o.status for o in result.outcomes} == {"ok"}, [o.error for o in result.outcomes]


def test_persistent_outage_fails_with_clear_error(setup: tuple[Config, sa.Engine],
                                                  clock: ManualClock,
                                                  clocked_sim: KiteSimulator) -> None:
    config, engine = setup
    clocked_sim.fail_next(100, "503", "/oms/portfolio/positions")
    result = pipeline.run_snapshot(config, engine, clock=clock, accounts=[
        config.accounts[0].user_id])
    [outcome] = result.outcomes
    assert outcome.status == "failed" and outcome.transient
    assert config.accounts[0].user_id in (outcome.error or "")
    positions_calls = [p for _, p, _ in clocked_sim.requests_log
                       if p == "/oms/portfolio/positions"]
    assert len(positions_calls) == 1 + config.kite.retries
