"""NAV units (``nav_daily``, ``nav_daily_all``, migration 0008) and `report performance`,
against hand-computed figures, on SQLite and PostgreSQL.

The scenario is stored through the real path (normalize_all -> store.store_snapshot),
cash only (total_value = cash - payout, cash_flow = intraday_payin - payout), so that every
figure can be worked out by hand:

session   AA0001                                  BB0002 (no flows)
11-02     10000                                   5000
11-03     11000 (+10%)                            5500
11-04     15675, deposit 5500                     5225
11-05     no snapshot (a gap)                     no snapshot
11-06     14400, withdrawal 3600                  6000
11-09     16430, pay-in 2000 and payout 500       6200
          the same day (a net deposit of 1500)
11-10     (NSE holiday)
11-11     0, withdrawal of everything 16430       6382.5
11-12     20000, deposit 20000 (a restart)        6382.5
11-13     19400                                   6000

Benchmark NIFTY50: 10-30 20000, 11-02 20100, 11-03 20400, 11-04 20300, 11-05 20500,
11-06 20600, 11-09 20800, 11-11 20700, 11-12 20900, 11-13 21000.
"""

from __future__ import annotations

import csv
import io
import itertools
import json
import math
import statistics
from collections.abc import Iterator
from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import sqlalchemy as sa
from alembic import command
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from snapshotter.normalize import normalize_all
from snapshotter.reports.performance import KEYS, MONEY, RATIOS, daily_returns, performance
from snapshotter.reports.query import Filters
from snapshotter.sessions import TradingCalendar
from snapshotter.store import engine as db
from snapshotter.store import migrate as migrations
from snapshotter.store import writes as store
from tests.conftest import run_cli, write_config
from tests.test_views import margins, plain, query, snapshot

A, B = "AA0001", "BB0002"
D1, D2, D3, GAP, D5, D6, D7, D8, D9 = (date(2026, 11, d) for d in (2, 3, 4, 5, 6, 9, 11, 12, 13))
CALENDAR = TradingCalendar()

# (session, total_value, intraday_payin, payout) of AA0001; BB0002's values.
A_DAYS = [(D1, 10000, 0, 0), (D2, 11000, 0, 0), (D3, 15675, 5500, 0),
          (D5, 14400, 0, 3600), (D6, 16430, 2000, 500), (D7, 0, 0, 16430),
          (D8, 20000, 20000, 0), (D9, 19400, 0, 0)]
B_DAYS = [(D1, 5000), (D2, 5500), (D3, 5225), (D5, 6000), (D6, 6200), (D7, 6382.5),
          (D8, 6382.5), (D9, 6000)]
NIFTY = [(date(2026, 10, 30), 20000), (D1, 20100), (D2, 20400), (D3, 20300),
         (GAP, 20500), (D5, 20600), (D6, 20800), (D7, 20700), (D8, 20900), (D9, 21000)]


def cash_snapshot(engine: sa.Engine, account: str, day: date, value: float,
                  payin: float = 0, payout: float = 0) -> None:
    snapshot(engine, account, day, funds=margins(value + payout, payin=payin, payout=payout))


def load_scenario(engine: sa.Engine) -> None:
    for day, value, payin, payout in A_DAYS:
        cash_snapshot(engine, A, day, value, payin, payout)
    for day, value in B_DAYS:
        cash_snapshot(engine, B, day, value)
    with engine.begin() as conn:
        conn.execute(sa.text("INSERT INTO benchmark_daily (name, date, close) "
                             "VALUES ('NIFTY50', :date, :close)"),
                     [{"date": d, "close": c} for d, c in NIFTY])


@pytest.fixture
def engine(database_url: str) -> Iterator[sa.Engine]:
    engine = db.make_engine(database_url)
    migrations.upgrade(database_url, engine)
    load_scenario(engine)
    yield engine
    engine.dispose()


def approx_rows(rows: list[tuple[Any, ...]]) -> list[tuple[Any, ...]]:
    return [tuple(pytest.approx(v, rel=1e-12, abs=1e-9) if isinstance(v, float) else v
                  for v in row) for row in rows]


# --- the views --------------------------------------------------------------------------

NAV_A = [
    # first snapshot: nav 1000, units 10000 / 1000
    (A, "2026-11-02", 10000, 0, 10, 1000),
    # no flow: units kept, nav 11000 / 10
    (A, "2026-11-03", 11000, 0, 10, 1100),
    # deposit at the previous NAV: units 10 + 5500 / 1100 = 15; nav 15675 / 15
    (A, "2026-11-04", 15675, 5500, 15, 1045),
    # (11-05: no row) withdrawal at today's NAV: nav (14400 + 3600) / 15 = 1200,
    # units 15 - 3600 / 1200 = 12
    (A, "2026-11-06", 14400, -3600, 12, 1200),
    # pay-in 2000 and payout 500: cash_flow +1500, a deposit: units 12 + 1500 / 1200 =
    # 13.25; nav 16430 / 13.25
    (A, "2026-11-09", 16430, 1500, 13.25, 1240),
    # total value 0: no units, no NAV
    (A, "2026-11-11", 0, -16430, None, None),
    # the series starts again: nav 1000, units 20000 / 1000 (the deposit is not added)
    (A, "2026-11-12", 20000, 20000, 20, 1000),
    (A, "2026-11-13", 19400, 0, 20, 970),
]
NAV_B = [(B, day.isoformat(), value, 0, 5, value / 5) for day, value in B_DAYS]
# Per session, A + B: units 15 at 1000; 11-04: 15 + 5500 / 1100 = 20 units, 20900 / 20;
# 11-06: nav (20400 + 3600) / 20 = 1200, units 20 - 3 = 17; 11-09: units 17 + 1500 / 1200
# = 18.25, nav 22630 / 18.25 = 1240; 11-11: nav (6382.5 + 16430) / 18.25 = 1250, units
# 18.25 - 16430 / 1250 = 5.106; 11-12: units 5.106 + 20000 / 1250 = 21.106, nav
# 26382.5 / 21.106 = 1250; 11-13: nav 25400 / 21.106.
ALL_UNITS_LAST = 18.25 - 16430 / 1250 + 20000 / 1250
NAV_ALL = [
    ("2026-11-02", 2, 15000, 0, 15, 1000),
    ("2026-11-03", 2, 16500, 0, 15, 1100),
    ("2026-11-04", 2, 20900, 5500, 20, 1045),
    ("2026-11-06", 2, 20400, -3600, 17, 1200),
    ("2026-11-09", 2, 22630, 1500, 18.25, 1240),
    ("2026-11-11", 2, 6382.5, -16430, 18.25 - 16430 / 1250, 1250),
    ("2026-11-12", 2, 26382.5, 20000, ALL_UNITS_LAST, 1250),
    ("2026-11-13", 2, 25400, 0, ALL_UNITS_LAST, 25400 / ALL_UNITS_LAST),
]


def test_nav_daily(engine: sa.Engine) -> None:
    rows = query(engine, "SELECT * FROM nav_daily ORDER BY account, snapshot_date")
    assert [tuple(r[c] for c in ("account", "snapshot_date", "total_value", "cash_flow",
                                 "units", "nav")) for r in rows] == approx_rows(NAV_A + NAV_B)
    ids = query(engine, "SELECT snapshot_id FROM portfolio_daily ORDER BY account, "
                        "snapshot_date")
    assert [r["snapshot_id"] for r in rows] == [r["snapshot_id"] for r in ids]
    assert all(isinstance(r["nav"], float) for r in rows if r["nav"] is not None)


def test_nav_daily_all(engine: sa.Engine) -> None:
    rows = query(engine, "SELECT * FROM nav_daily_all ORDER BY snapshot_date")
    assert [tuple(r[c] for c in ("snapshot_date", "accounts", "total_value", "cash_flow",
                                 "units", "nav")) for r in rows] == approx_rows(NAV_ALL)


def test_no_value_no_nav_and_units_never_zero(database_url: str) -> None:
    """An account that starts empty has no NAV until it has a value; a withdrawal that
    leaves so little that the units come out 0 ends the series (as a value of 0 does),
    which starts again at 1000."""
    engine = db.make_engine(database_url)
    try:
        migrations.upgrade(database_url, engine)
        cash_snapshot(engine, A, D1, 0)
        cash_snapshot(engine, A, D2, 5000, payin=5000)   # the first value: 1000, 5 units
        cash_snapshot(engine, A, D3, 5500)                # 1100
        # 1e11 withdrawn, 0.000001 left (in the other segment): nav (0.000001 + 1e11) / 5
        # is 2e10 in doubles, and units 5 - 1e11 / 2e10 = 0: no NAV
        both = margins(1e11, payout=1e11)
        both["commodity"]["available"]["cash"] = 0.000001
        snapshot(engine, A, D5, funds=both)
        cash_snapshot(engine, A, D6, 300, payin=300)      # starts again: 1000, 0.3 units
        rows = query(engine, "SELECT total_value, cash_flow, units, nav FROM nav_daily "
                             "ORDER BY snapshot_date")
        assert [tuple(r.values()) for r in rows] == approx_rows([
            (0, 0, None, None), (5000, 5000, 5, 1000), (5500, 0, 5, 1100),
            (0.000001, -1e11, None, None), (300, 300, 0.3, 1000)])
    finally:
        engine.dispose()


# --- store keeps snapshot_nav current ---------------------------------------------------

def nav_of(engine: sa.Engine, account: str) -> list[tuple[Any, ...]]:
    return [(r["snapshot_date"], r["units"], r["nav"]) for r in query(
        engine, f"SELECT snapshot_date, units, nav FROM nav_daily WHERE account = '{account}' "
                f"ORDER BY snapshot_date")]


def test_a_past_session_stored_again_recomputes_the_later_navs(engine: sa.Engine) -> None:
    """Storing 11-03 again with another value (a superseding snapshot, as `run --force`
    or a recovered failed attempt of a past session) changes every later NAV; the
    superseded snapshot's row goes."""
    cash_snapshot(engine, A, D2, 12000)  # was 11000: nav 1200; 11-04: units 10 + 5500/1200
    units = 10 + 5500 / 1200
    got = nav_of(engine, A)
    assert got[:3] == approx_rows([("2026-11-02", 10, 1000), ("2026-11-03", 10, 1200),
                                   ("2026-11-04", units, 15675 / units)])
    assert got[3][2] == pytest.approx((14400 + 3600) / units)
    assert got[-2:] == approx_rows([("2026-11-12", 20, 1000), ("2026-11-13", 20, 970)])
    [(count,)] = [tuple(r.values()) for r in query(
        engine, "SELECT COUNT(*) AS n FROM snapshot_nav n JOIN snapshots s "
                "ON s.id = n.snapshot_id WHERE s.status <> 'ok'")]
    assert count == 0


def test_a_recovered_failed_attempt_recomputes_the_later_navs(engine: sa.Engine) -> None:
    """`run --from-raw` turning a failed attempt of the gap (11-05) into its complete
    snapshot: the NAV of 11-05 appears and the later ones follow (a deposit of 1000 at
    nav 1045)."""
    payloads = {"holdings": [], "positions": {"net": [], "day": []}, "mf_holdings": [],
                "margins": margins(17000, payin=1000)}
    store.record_failure(engine, account=A, snapshot_date=GAP, error="ReadTimeout",
                         taken_at=datetime(2026, 11, 5, 11, 0, tzinfo=UTC),
                         payloads=payloads)
    [failed] = [r["id"] for r in query(engine, "SELECT id FROM snapshots WHERE "
                                               "status = 'failed'")]
    assert store.recover_failed(engine, failed, frames=normalize_all(payloads, A, GAP),
                                warnings=[], after_close=True) is not None
    units = 15 + 1000 / 1045
    got = nav_of(engine, A)
    assert got[3:5] == approx_rows([("2026-11-05", units, 17000 / units),
                                    ("2026-11-06", units - 3600 / (18000 / units),
                                     18000 / units)])
    assert got[-2:] == approx_rows([("2026-11-12", 20, 1000), ("2026-11-13", 20, 970)])


def test_replace_rows_recomputes_only_what_changed(engine: sa.Engine,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """`run --from-raw`: a snapshot re-derived to the same value and flow keeps its NAV
    rows (no recursion); one re-derived to another value recomputes from its session."""
    [snap_id] = [r["id"] for r in query(engine, f"SELECT id FROM snapshots WHERE account = "
                                                f"'{A}' AND snapshot_date = '{D3}' "
                                                f"AND status = 'ok'")]
    before = nav_of(engine, A)
    calls: list[tuple[str, date]] = []
    real = store._insert_nav
    monkeypatch.setattr(store, "_insert_nav", lambda session, account, start: (
        calls.append((account, start)), real(session, account, start))[1])

    def payloads(value: float, payin: float) -> dict[str, Any]:
        return {"holdings": [], "positions": {"net": [], "day": []}, "mf_holdings": [],
                "margins": margins(value, payin=payin)}

    store.replace_rows(engine, snap_id, normalize_all(payloads(15675, 5500), A, D3))
    assert calls == [] and nav_of(engine, A) == before
    store.replace_rows(engine, snap_id, normalize_all(payloads(16500, 5500), A, D3))
    assert calls == [(A, D3)]
    got = nav_of(engine, A)
    assert got[:2] == before[:2] and got[2] == pytest.approx(("2026-11-04", 15, 1100))
    assert got[3] == approx_rows([("2026-11-06", 12, 1200)])[0]  # (14400+3600)/15 again


def test_0008_fills_snapshot_nav_for_existing_history(database_url: str,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    """History stored at revision 0007 (no snapshot_nav): upgrading computes the same
    NAVs as store does; downgrading drops the table and both views."""
    engine = db.make_engine(database_url)
    cfg = migrations.alembic_config(database_url)
    try:
        with engine.begin() as conn:
            cfg.attributes["connection"] = conn
            command.upgrade(cfg, "0007")
        delete_rows = store._delete_rows
        with monkeypatch.context() as m:  # store as it was at 0007: no snapshot_nav
            m.setattr(store, "_insert_nav", lambda session, account, start: None)
            m.setattr(store, "_insert_flows", lambda session, account, start: None)
            m.setattr(store, "_delete_rows",
                      lambda session, ids, nav=True: delete_rows(session, ids, nav=False))
            load_scenario(engine)
        with engine.begin() as conn:
            cfg.attributes["connection"] = conn
            command.upgrade(cfg, "head")
        rows = query(engine, "SELECT * FROM nav_daily ORDER BY account, snapshot_date")
        assert [tuple(r[c] for c in ("account", "snapshot_date", "total_value", "cash_flow",
                                     "units", "nav")) for r in rows] == \
            approx_rows(NAV_A + NAV_B)
        with engine.begin() as conn:
            cfg.attributes["connection"] = conn
            command.downgrade(cfg, "0007")
        inspector = sa.inspect(engine)
        assert "snapshot_nav" not in inspector.get_table_names()
        assert not {"nav_daily", "nav_daily_all"} & set(inspector.get_view_names())
    finally:
        engine.dispose()


# --- report performance -----------------------------------------------------------------

def xirr_by_bisection(flows: list[tuple[date, float]]) -> float:
    """The rate r with sum(cf / (1 + r) ^ (days / 365)) = 0, by bisection on log(1 + r)
    (independent of pyxirr): the bracket is where the present value changes sign."""
    first = flows[0][0]

    def npv(log_growth: float) -> float:
        return sum(cf * math.exp(-log_growth * (d - first).days / 365) for d, cf in flows)

    low, high = -20.0, 20.0
    assert npv(low) * npv(high) < 0
    for _ in range(200):
        mid = (low + high) / 2
        if npv(low) * npv(mid) <= 0:
            high = mid
        else:
            low = mid
    return math.exp((low + high) / 2) - 1


def volatility(returns: list[float]) -> float:
    return statistics.stdev(returns) * math.sqrt(252)


# AA0001 over its whole history. twr: pnl_daily's returns after 11-02: 1000 / 10000;
# (15675 - 11000 - 5500) / 11000; (14400 - 15675 + 3600) / 15675; (16430 - 14400 - 1500)
# / 14400; (0 - 16430 + 16430) / 16430 = 0; 11-12: none (previous value 0); -600 / 20000.
A_FLOWS = [(D1, -10000), (D2, 0), (D3, -5500), (D5, 3600), (D6, -1500), (D7, 16430),
           (D8, -20000), (D9, 19400)]
EXPECTED_A = {
    "account": A, "from": "2026-11-02", "to": "2026-11-13",
    "start_value": 10000, "end_value": 19400,
    "net_flows": 5500 - 3600 + 1500 - 16430 + 20000,                    # 6970
    "market_pnl": 19400 - 10000 - 6970,                                  # 2430
    "twr": 1.1 * (1 - 825 / 11000) * (1 + 2325 / 15675) * (1 + 530 / 14400) * 0.97 - 1,
    "nav_return": None, "cagr": None,  # the NAV series stops on 11-11
    # 1045 / 1100 - 1 before the restart; 970 / 1000 - 1 after it
    "max_drawdown": -0.05,
    "volatility": volatility([0.1, -0.05, 1200 / 1045 - 1, 1240 / 1200 - 1, -0.03]),
    "gaps": 1,  # 11-05 (11-10 is an NSE holiday)
}
EXPECTED_B = {
    "account": B, "from": "2026-11-02", "to": "2026-11-13",
    "start_value": 5000, "end_value": 6000, "net_flows": 0, "market_pnl": 1000,
    "twr": 0.2, "nav_return": 0.2, "cagr": 1.2 ** (365 / 11) - 1,
    "xirr": 1.2 ** (365 / 11) - 1,  # one flow in, one out: the CAGR
    "max_drawdown": 1200 / 1276.5 - 1,
    "volatility": volatility([v / p - 1 for (_, p), (_, v) in itertools.pairwise(B_DAYS)]),
    "gaps": 1,
}
ALL_NAV = [row[5] for row in NAV_ALL]
ALL_FLOWS = [(D1, -15000), (D2, 0), (D3, -5500), (D5, 3600), (D6, -1500), (D7, 16430),
             (D8, -20000), (D9, 25400)]
EXPECTED_ALL = {
    "account": "ALL", "from": "2026-11-02", "to": "2026-11-13",
    "start_value": 15000, "end_value": 25400, "net_flows": 6970,
    "market_pnl": 25400 - 15000 - 6970,                                  # 3430
    # pnl_daily's formula over the summed values and flows
    "twr": (1.1 * (1 - 1100 / 16500) * (1 + 3100 / 20900) * (1 + 730 / 20400)
            * (1 + 182.5 / 22630) * 1 * (1 - 982.5 / 26382.5)) - 1,
    "nav_return": ALL_NAV[-1] / 1000 - 1,
    "cagr": (ALL_NAV[-1] / 1000) ** (365 / 11) - 1,
    "max_drawdown": -0.05,  # 1045 / 1100 - 1 (11-13: 1203.4 / 1250 - 1 = -0.037)
    "volatility": volatility([b / a - 1 for a, b in itertools.pairwise(ALL_NAV)]),
    "gaps": 1,
}


def check(row: dict[str, Any], expected: dict[str, Any]) -> None:
    for key, want in expected.items():
        if isinstance(want, float | int) and not isinstance(want, bool) and key != "gaps":
            assert row[key] == pytest.approx(want, rel=1e-9, abs=1e-12), key
        else:
            assert row[key] == want, key


def records(engine: sa.Engine, **kwargs: Any) -> tuple[dict[str, dict[str, Any]], Any]:
    benchmark = kwargs.pop("benchmark", None)
    result = performance(engine, CALENDAR, Filters(**kwargs), benchmark)
    frame = result.frame
    rows = frame.astype(object).where(frame.notna(), None).to_dict("records")
    return {r["account"]: r for r in rows}, result


def test_report_performance_whole_history(engine: sa.Engine) -> None:
    rows, result = records(engine)
    assert list(result.frame.columns) == KEYS
    assert list(rows) == [A, B, "ALL"]
    check(rows[A], EXPECTED_A)
    assert rows[A]["xirr"] == pytest.approx(xirr_by_bisection(A_FLOWS), rel=1e-7)
    check(rows[B], EXPECTED_B)
    assert rows[B]["xirr"] == pytest.approx(xirr_by_bisection(
        [(D1, -5000), (D9, 6000)]), rel=1e-7)
    check(rows["ALL"], EXPECTED_ALL)
    assert rows["ALL"]["xirr"] == pytest.approx(xirr_by_bisection(ALL_FLOWS), rel=1e-7)
    assert result.notes == [
        "AA0001: nav_return and cagr are empty: the NAV series stops on 2026-11-11 (total "
        "value 0 or less) and starts again at 1000"]
    assert [w.split(":")[0] for w in result.warnings] == [A, "ALL", B]
    assert "1 NSE session(s) in the window have no snapshot (2026-11-05)" in \
        result.warnings[0]


def test_report_performance_window_and_benchmark(engine: sa.Engine) -> None:
    """11-03 to 11-09 (given as 11-03 .. 11-10): the deposit, the gap, the withdrawal and
    the day with both, no restart: every figure has a value."""
    rows, result = records(engine, accounts=(A,), start=D2, end=date(2026, 11, 10),
                           benchmark="nifty50")
    assert list(rows) == [A]
    check(rows[A], {
        "account": A, "from": "2026-11-03", "to": "2026-11-09",
        "start_value": 11000, "end_value": 16430,
        "net_flows": 5500 - 3600 + 1500, "market_pnl": 16430 - 11000 - 3400,
        "twr": (1 - 825 / 11000) * (1 + 2325 / 15675) * (1 + 530 / 14400) - 1,
        "nav_return": 1240 / 1100 - 1,
        "cagr": (1240 / 1100) ** (365 / 6) - 1,
        "max_drawdown": 1045 / 1100 - 1,
        "volatility": volatility([1045 / 1100 - 1, 1200 / 1045 - 1, 1240 / 1200 - 1]),
        "gaps": 1,
        # the last close on or before 11-09 / the last on or before 11-03
        "benchmark": "NIFTY50", "benchmark_return": 20800 / 20400 - 1,
        "excess_return": (1240 / 1100 - 1) - (20800 / 20400 - 1),
    })
    assert rows[A]["xirr"] == pytest.approx(xirr_by_bisection(
        [(D2, -11000), (D3, -5500), (D5, 3600), (D6, -1500 + 16430)]), rel=1e-7)
    assert result.notes == []
    # The whole history against NIFTY50: 21000 / 20100 (11-02, the first session)
    rows, _ = records(engine, benchmark="NIFTY50")
    assert {a: r["benchmark_return"] for a, r in rows.items()} == pytest.approx(
        {A: 21000 / 20100 - 1, B: 21000 / 20100 - 1, "ALL": 21000 / 20100 - 1})
    assert rows[A]["excess_return"] is None
    assert rows[B]["excess_return"] == pytest.approx(0.2 - (21000 / 20100 - 1))


def test_report_performance_empty_figures_say_why(engine: sa.Engine) -> None:
    with engine.begin() as conn:
        conn.execute(sa.text("INSERT INTO benchmark_daily (name, date, close) "
                             "VALUES ('LATE', :d, 100)"), {"d": date(2026, 11, 16)})
    rows, result = records(engine, accounts=(A, "ALL"), start=D9, benchmark="LATE")
    assert list(rows) == [A, "ALL"]
    assert rows[A]["from"] == rows[A]["to"] == "2026-11-13"
    assert (rows[A]["twr"], rows[A]["nav_return"], rows[A]["max_drawdown"]) == (0, 0, 0)
    assert (rows[A]["xirr"], rows[A]["cagr"], rows[A]["volatility"]) == (None, None, None)
    assert rows[A]["benchmark_return"] is None and rows[A]["gaps"] == 0
    assert result.notes == [
        "AA0001: xirr is empty: the window has one snapshot",
        "ALL: xirr is empty: the window has one snapshot",
        "AA0001: benchmark_return is empty: LATE has no close on or before 2026-11-13",
        "ALL: benchmark_return is empty: LATE has no close on or before 2026-11-13",
        # every empty figure says why (issue 17)
        "AA0001: cagr is empty: the window has one session (no time to annualise over)",
        "AA0001: volatility is empty: it needs two daily NAV returns (three sessions or "
        "more); the window has one session",
        "AA0001: excess_return is empty: benchmark_return is empty",
        "ALL: cagr is empty: the window has one session (no time to annualise over)",
        "ALL: volatility is empty: it needs two daily NAV returns (three sessions or "
        "more); the window has one session",
        "ALL: excess_return is empty: benchmark_return is empty"]
    # From the day A held nothing: no NAV to start from; flows 0 (-value 0 on 11-11)
    # and 0 (-20000 deposited + 20000 held on 11-12): no rate.
    rows, result = records(engine, accounts=(A,), start=D7, end=D8)
    assert (rows[A]["xirr"], rows[A]["nav_return"], rows[A]["cagr"]) == (None, None, None)
    assert result.notes == [
        "AA0001: xirr is empty: its flows are all of one sign (money has to go both in "
        "and out)",
        "AA0001: nav_return and cagr are empty: no NAV on 2026-11-11 (total value 0 or less)",
        "AA0001: volatility is empty: it needs two daily NAV returns (three sessions or more)"]


def test_the_reports_daily_return_is_pnl_daily_s(engine: sa.Engine) -> None:
    """The report computes pnl_daily's daily_return with its formula (cheaper than
    reading the view over every account): the same values, on the scenario and on
    3 months of random history (deposits, withdrawals, missed and failed sessions)."""
    from benchmarks.bench_views import generate, insert, sessions

    for batch in generate(accounts=3, n_holdings=5, days=sessions(60, date(2025, 1, 6)),
                          seed=4, first_snapshot_id=1000):
        with engine.begin() as conn:
            insert(conn, batch)
    rows = query(engine, "SELECT account, snapshot_date, total_value, cash_flow, "
                         "daily_return FROM pnl_daily ORDER BY account, snapshot_date")
    frame = pd.DataFrame(rows)
    ours = daily_returns(frame)
    assert len(frame) > 150 and frame["daily_return"].notna().sum() > 150
    assert ours.isna().tolist() == frame["daily_return"].isna().tolist()
    assert ours.dropna().tolist() == frame["daily_return"].dropna().tolist()


@settings(max_examples=25, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(values=st.lists(st.integers(min_value=10**5, max_value=10**10).map(lambda v: v / 100),
                       min_size=2, max_size=12))
def test_without_flows_nav_return_is_twr_is_the_value_ratio(
        database_url: str, values: list[float]) -> None:
    """Values of 1,000.00 to 100,000,000.00 rupees, in paise, without flows: the NAV's
    return, the TWR and the value ratio agree (as growth factors, to 1e-9: a day's
    1 + daily_return loses digits when the value falls a lot)."""
    engine = db.make_engine(database_url)
    try:
        migrations.upgrade(database_url, engine)
        account = f"HY{abs(hash(tuple(values))) % 10**8:08d}"
        day = D1
        for value in values:
            cash_snapshot(engine, account, day, value)
            day = CALENDAR.next_session(day).day
        rows, _ = records(engine, accounts=(account,))
        row = rows[account]
        growth = values[-1] / values[0]
        assert 1 + row["nav_return"] == pytest.approx(growth, rel=1e-9)
        assert 1 + row["twr"] == pytest.approx(growth, rel=1e-9)
        assert row["net_flows"] == 0 and row["gaps"] == 0
    finally:
        engine.dispose()


# --- through the command ----------------------------------------------------------------

@pytest.fixture
def cfg(engine: sa.Engine, database_url: str, tmp_path: Path) -> Path:
    return write_config(tmp_path / "config.yaml", {
        "database": {"url": database_url},
        "accounts": [{"user_id": A, "auth": "manual"}, {"user_id": B, "auth": "manual"}],
    })


def test_report_performance_command(cfg: Path) -> None:
    result = run_cli("--config", str(cfg), "report", "performance", "--format", "json",
                     "--benchmark", "NIFTY50")
    assert result.returncode == 0, result.stderr
    rows = {r["account"]: r for r in json.loads(result.stdout)}
    assert list(next(iter(rows.values()))) == [*KEYS, "benchmark", "benchmark_return",
                                               "excess_return"]
    check(rows[A], EXPECTED_A)
    check(rows[B], EXPECTED_B)
    check(rows["ALL"], EXPECTED_ALL)
    assert rows[A]["xirr"] == pytest.approx(xirr_by_bisection(A_FLOWS), rel=1e-7)
    assert rows["ALL"]["benchmark_return"] == pytest.approx(21000 / 20100 - 1)

    table = run_cli("--config", str(cfg), "report", "performance", "--account", "aa0001",
                    "--from", "2026-11-11", "--to", "2026-11-12")
    assert table.returncode == 0, table.stderr
    lines = table.stdout.splitlines()
    assert lines[2].split() == ["AA0001", "2026-11-11", "2026-11-12", "0.00", "20,000.00",
                                "20,000.00", "0.00", "0.00%", "0.00%", "0", "0"]
    assert "ALL" not in table.stdout
    assert lines[3:] == [
        "note: AA0001: xirr is empty: its flows are all of one sign (money has to go both "
        "in and out)",
        "note: AA0001: nav_return and cagr are empty: no NAV on 2026-11-11 (total value 0 "
        "or less)",
        "note: AA0001: volatility is empty: it needs two daily NAV returns (three sessions "
        "or more)"]
    whole = run_cli("--config", str(cfg), "report", "performance")
    assert "warning: AA0001: 1 NSE session(s) in the window have no snapshot " \
           "(2026-11-05)" in whole.stdout
    assert "note: AA0001: nav_return and cagr are empty: the NAV series stops on " \
           "2026-11-11" in whole.stdout

    unknown = run_cli("--config", str(cfg), "report", "performance", "--benchmark", "SENSEX")
    assert unknown.returncode == 2
    assert unknown.stderr.strip().splitlines() == [
        "error: unknown benchmark 'SENSEX' (benchmark_daily has: NIFTY50; load one with "
        "`snapshotter benchmark import NAME FILE.csv`)"]
    assert unknown.stdout == ""
    misplaced = run_cli("--config", str(cfg), "report", "pnl", "--benchmark", "NIFTY50")
    assert misplaced.returncode == 2 and "--benchmark is for" in misplaced.stderr


def _places(text: str) -> int:
    exponent = Decimal(text).as_tuple().exponent
    assert isinstance(exponent, int), text
    return max(0, -exponent)


def test_report_performance_csv_and_json_are_rounded(cfg: Path) -> None:
    """As the other reports (docs/returns.md: Reports, exports and the chart): money to 6 decimals,
    ratios to 10, no float noise, and the CSV ends with its last row (was
    0.17236413652190373 and a blank line)."""
    args = ["--config", str(cfg), "report", "performance", "--benchmark", "NIFTY50"]
    out = run_cli(*args, "--format", "csv")
    assert out.returncode == 0, out.stderr
    assert out.stdout.endswith("\n") and not out.stdout.endswith("\n\n")
    data = run_cli(*args, "--format", "json")
    assert data.returncode == 0, data.stderr
    for rows in (list(csv.DictReader(io.StringIO(out.stdout))),
                 [{k: "" if v is None else str(v) for k, v in row.items()}
                  for row in json.loads(data.stdout)]):
        assert [row["account"] for row in rows] == [A, B, "ALL"]
        for row in rows:
            for column in (*MONEY, *RATIOS):
                if row[column]:
                    assert _places(row[column]) <= (6 if column in MONEY else 10), \
                        (row["account"], column, row[column])
        twr = {row["account"]: float(row["twr"]) for row in rows}
        assert twr[A] == round(EXPECTED_A["twr"], 10)
    assert max(_places(str(v)) for row in json.loads(data.stdout)
               for k, v in row.items() if k in RATIOS and v is not None) == 10


def test_chart_against_a_benchmark(cfg: Path, engine: sa.Engine, tmp_path: Path) -> None:
    from snapshotter.reports.chart import benchmark_chart_data

    name, nav, closes = benchmark_chart_data(engine, "NIFTY50", A)
    assert name == "NIFTY50"
    # 1100 / 1000, 1045 / 1000, ...; 11-11 (no NAV) and 11-12 (a new series) count 0%
    assert list(nav["rebased"]) == pytest.approx(
        [100, 110, 104.5, 120, 124, 124, 124, 124 * 0.97])
    # rebased at the last close on or before 11-02
    assert [plain(d.date()) for d in closes["date"]][:2] == ["2026-11-02", "2026-11-03"]
    assert list(closes["rebased"])[:2] == pytest.approx([100, 20400 / 20100 * 100])
    for account in (None, A):
        path = tmp_path / f"bench-{account}.png"
        args = ["--config", str(cfg), "chart", "--out", str(path), "--benchmark", "NIFTY50"]
        result = run_cli(*args, *(["--account", account] if account else []))
        assert result.returncode == 0, result.stderr
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    unknown = run_cli("--config", str(cfg), "chart", "--out", str(tmp_path / "x.png"),
                      "--benchmark", "NOPE")
    assert unknown.returncode == 2 and "unknown benchmark 'NOPE'" in unknown.stderr
    assert not (tmp_path / "x.png").exists()


def test_chart_against_a_benchmark_into_a_directory(cfg: Path, tmp_path: Path) -> None:
    """`--out DIR` names the file after what it shows: the NAV against NIFTY50 does not
    replace the portfolio chart already in DIR (both were DIR/portfolio.png)."""
    out = tmp_path / "charts"
    out.mkdir()
    base = ["--config", str(cfg), "chart", "--out", str(out)]
    written = []
    for extra in ([], ["--benchmark", "nifty50"], ["--benchmark", "NIFTY50", "--account", A]):
        result = run_cli(*base, *extra)
        assert result.returncode == 0, result.stderr
        written.append(result.stdout.splitlines()[0])
    assert written == [f"wrote {out / 'portfolio.png'}",
                       f"wrote {out / 'portfolio-vs-NIFTY50.png'}",
                       f"wrote {out / f'portfolio-{A}-vs-NIFTY50.png'}"]
    assert sorted(p.name for p in out.iterdir()) == [
        f"portfolio-{A}-vs-NIFTY50.png", "portfolio-vs-NIFTY50.png", "portfolio.png"]
