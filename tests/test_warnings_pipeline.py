"""Warned snapshots with an injected clock: final only when the same warnings come back
30 minutes apart; the daemon fetches them again; migration 0006 there and back."""

from __future__ import annotations

import time as systime
from collections.abc import Iterator
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from alembic import command

from snapshotter import normalize, pipeline, routes
from snapshotter.config import Config, parse_config
from snapshotter.ops.daemon import Daemon
from snapshotter.sessions import IST, ManualClock
from snapshotter.simulator import KiteSimulator, SimAccount, demo_accounts
from snapshotter.store import engine as db
from snapshotter.store import migrate as migrations
from snapshotter.store import writes as store
from tests.conftest import HANG_GUARD, config_dict


def _ist(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=IST)


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> ManualClock:
    """One injected clock for our code and for APScheduler's notion of now."""
    fake = ManualClock(_ist("2026-11-26T17:00:00"))

    class FakeDatetime(datetime):
        @classmethod
        def now(cls, tz=None):  # type: ignore[no-untyped-def,override]
            return fake.now.astimezone(tz) if tz else fake.now.replace(tzinfo=None)

    import apscheduler.executors.base
    import apscheduler.schedulers.base
    import apscheduler.triggers.date

    for module in (apscheduler.schedulers.base, apscheduler.executors.base,
                   apscheduler.triggers.date):
        monkeypatch.setattr(module, "datetime", FakeDatetime)
    return fake


@pytest.fixture
def world(clock: ManualClock, database_url: str, tmp_path: Path
          ) -> Iterator[tuple[Config, sa.Engine, KiteSimulator, SimAccount]]:
    [account] = demo_accounts(1, seed=5)
    with KiteSimulator([account], clock=clock) as sim:
        config = parse_config(config_dict(sim, [account], database_url, tmp_path / "state"))
        engine = db.make_engine(database_url)
        migrations.upgrade(database_url, engine)
        yield config, engine, sim, account
        engine.dispose()


def _ledger(engine: sa.Engine) -> list[tuple[str, str, bool, str | None]]:
    with engine.connect() as conn:
        return [(str(r.snapshot_date), r.status, bool(r.final), r.warnings)
                for r in conn.execute(sa.text("SELECT * FROM snapshots ORDER BY id"))]


def _run_at(when: str, config: Config, engine: sa.Engine,
            clock: ManualClock) -> pipeline.AccountOutcome:
    clock.set(when)
    [outcome] = pipeline.run_snapshot(config, engine, clock=clock).outcomes
    return outcome


def test_same_warnings_30_minutes_apart_make_the_snapshot_final(
        world: tuple[Config, sa.Engine, KiteSimulator, SimAccount],
        clock: ManualClock) -> None:
    config, engine, sim, account = world
    assert _run_at("2026-11-26T17:00", config, engine, clock).final
    portfolio = sim.portfolio(account.user_id)
    holdings = portfolio["holdings"]

    portfolio["holdings"] = []  # overnight, everything gone
    emptied = _run_at("2026-11-27T16:30", config, engine, clock)
    assert emptied.status == "ok" and not emptied.final
    [gone_all] = emptied.warnings
    assert gone_all.startswith(f"account {account.user_id}: holdings went from "
                               f"{len(holdings)} rows on 2026-11-26 to 0 (gone: ")

    portfolio["holdings"] = holdings[:1]  # another answer: a warning of its own
    one_left = _run_at("2026-11-27T16:45", config, engine, clock)
    [one_warning] = one_left.warnings
    assert one_warning != gone_all and not one_left.final
    # 15 minutes after that answer was first seen (45 after the other one): not yet.
    assert not _run_at("2026-11-27T17:00", config, engine, clock).final
    assert not _run_at("2026-11-27T17:14:59", config, engine, clock).final
    confirmed = _run_at("2026-11-27T17:15", config, engine, clock)
    assert confirmed.final and confirmed.warnings == (one_warning,)

    # Final, warning kept: the next run leaves it alone and does not ask Kite.
    requests = len(sim.requests_log)
    assert _run_at("2026-11-27T20:30", config, engine, clock).status == "skipped"
    assert len(sim.requests_log) == requests
    assert _ledger(engine)[-1] == ("2026-11-27", "ok", True, one_warning)

    # The next session compares with that snapshot: the same holding, no warning.
    assert _run_at("2026-11-30T16:30", config, engine, clock).warnings == ()


def test_daemon_fetches_a_warned_snapshot_again_and_keeps_it_final(
        world: tuple[Config, sa.Engine, KiteSimulator, SimAccount],
        clock: ManualClock) -> None:
    config, engine, sim, account = world
    user = account.user_id
    held = sim.portfolio(user)["holdings"][0]
    held["last_price"] = None
    clock.set("2026-11-27T16:30:01")
    d = Daemon(config, engine, clock=clock)
    d.start(catch_up=False)
    try:
        d.take_due()
        [first] = d.runs[0].outcomes
        assert first.status == "ok" and not first.final and first.warnings
        job = d.scheduler.get_job(f"confirm-2026-11-27-1-{user}")
        assert job is not None and job.kwargs["accounts"] == [user]
        assert job.next_run_time == _ist("2026-11-27T17:00:01")
        clock.set("2026-11-27T17:00:05")
        d.scheduler.wakeup()
        deadline = systime.monotonic() + HANG_GUARD
        while len(d.runs) < 2 and systime.monotonic() < deadline:
            systime.sleep(0.05)
        assert len(d.runs) == 2
    finally:
        d.stop()
    [again] = d.runs[1].outcomes
    assert again.status == "ok" and again.final and again.warnings == first.warnings
    assert d.scheduler.get_job(f"confirm-2026-11-27-2-{user}") is None


def _snapshot(engine: sa.Engine, account: str, day: date, holdings: list[dict[str, Any]],
              mf: list[dict[str, Any]]) -> None:
    payloads = {"holdings": holdings, "positions": {"net": [], "day": []}, "margins": {},
                "mf_holdings": mf}
    found = normalize.normalize_snapshot(payloads, account, day)
    store.store_snapshot(engine, account=account, snapshot_date=day,
                         taken_at=datetime(day.year, day.month, day.day, 11, tzinfo=UTC),
                         final=True, payloads=payloads, frames=found.frames,
                         warnings=found.warnings)


def _views(engine: sa.Engine) -> tuple[Any, ...]:
    """The first snapshot's sums, the unpriced holding's price, the estimated sell price."""
    with engine.connect() as conn:
        totals = conn.execute(sa.text(
            "SELECT holdings_value, holdings_day_pnl, mf_value FROM portfolio_daily "
            "ORDER BY snapshot_date")).first()
        price = conn.execute(sa.text(
            "SELECT price FROM holding_daily WHERE tradingsymbol = 'UNPRICED'")).scalar()
        sold = conn.execute(sa.text("SELECT sell_price FROM realised_estimate")).all()
    assert totals is not None
    return (*totals, price, *(s for (s,) in sold))


def test_migration_0006_values_unpriced_holdings_and_downgrades(database_url: str) -> None:
    engine = db.make_engine(database_url)
    cfg = migrations.alembic_config(database_url)

    def migrate(how: Any, to: str) -> None:
        with engine.begin() as conn:
            cfg.attributes["connection"] = conn
            how(cfg, to)

    priced = {"tradingsymbol": "PRICED", "exchange": "NSE", "quantity": 10,
              "average_price": 90, "last_price": 100, "close_price": 95}
    unpriced = {**priced, "tradingsymbol": "UNPRICED", "last_price": None, "close_price": 50}
    fund = {"folio": "F1", "tradingsymbol": "INF1", "quantity": 2, "average_price": 30,
            "last_price": None}
    # holdings value, day P&L, MF value, UNPRICED's price, its sell price once gone
    at_close = (10 * 100 + 10 * 50, 10 * (100 - 95), 2 * 30, 50, 50)
    try:
        migrations.upgrade(database_url, engine)
        _snapshot(engine, "AB1234", date(2026, 11, 26), [priced, unpriced], [fund])
        _snapshot(engine, "AB1234", date(2026, 11, 27), [priced], [fund])
        assert _views(engine) == pytest.approx(at_close)

        migrate(command.downgrade, "0005")
        assert "warnings" not in {c["name"] for c in sa.inspect(engine).get_columns("snapshots")}
        assert _views(engine) == (1000.0, 50.0, 0.0, None, None)  # as 0005 valued them

        migrate(command.upgrade, "head")
        assert _views(engine) == pytest.approx(at_close)
    finally:
        engine.dispose()


def test_text_every_database_stores() -> None:
    """Lone surrogates (JSON can carry them: "\\ud800") are not UTF-8 either."""
    payload = [{"tradingsymbol": "A\ud800B", "exchange": "NSE", "x": {"\udfff": "\x00"}}]
    frame = normalize.normalize_route(routes.HOLDINGS, payload, "AB1234", date(2026, 11, 27))
    assert frame["tradingsymbol"].tolist() == ["A\ufffdB"]
    assert frame["extra"].tolist() == [{"x": {"\ufffd": "\ufffd"}}]
