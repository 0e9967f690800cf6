"""The all-accounts (ALL) figures when accounts' histories don't line up (migration 0015:
``household_daily``, ``portfolio_daily_all``, ``nav_daily_all``; `household leave`;
`report performance`, `report summary` and `chart` over them), on SQLite and PostgreSQL.

Hand-computed scenario (cash only but for BB0002's 10 INFY, average price 280):

session  AA0001              BB0002                          CC0003
11-02    10000               -                               4000
11-03    11000               joins: INFY 300 (close 290)     4400
                             + cash 2000 = 5000
11-04    11000               INFY 300 (close 300): 5000      4400 (its last snapshot)
11-05    12100               no snapshot (login refused)     left (household leave)
11-06    13100 (pay-in 1000) INFY 350 (close 340): 5500      -
11-09    14410               INFY 240 (close 350): 4400      9999 (after it left: ignored)
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import date
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from snapshotter.reports.performance import performance
from snapshotter.reports.query import Filters
from snapshotter.sessions import TradingCalendar
from snapshotter.store import engine as db
from snapshotter.store import migrate as migrations
from snapshotter.store.models import Base
from tests.conftest import run_cli, write_config
from tests.test_returns import approx_rows, cash_snapshot, xirr_by_bisection
from tests.test_views import holding, margins, query, snapshot

A, B, C = "AA0001", "BB0002", "CC0003"
D1, D2, D3, D4, D5, D6 = (date(2026, 11, d) for d in (2, 3, 4, 5, 6, 9))
CALENDAR = TradingCalendar()


def b_snapshot(engine: sa.Engine, day: date, last: float, close: float) -> None:
    snapshot(engine, B, day, holdings=[holding("INFY", 10, 280, last, close)],
             funds=margins(2000))


def load_household(engine: sa.Engine) -> None:
    for day, value, payin in ((D1, 10000, 0), (D2, 11000, 0), (D3, 11000, 0),
                              (D4, 12100, 0), (D5, 13100, 1000), (D6, 14410, 0)):
        cash_snapshot(engine, A, day, value, payin)
    b_snapshot(engine, D2, 300, 290)
    b_snapshot(engine, D3, 300, 300)
    b_snapshot(engine, D5, 350, 340)
    b_snapshot(engine, D6, 240, 350)
    for day, value in ((D1, 4000), (D2, 4400), (D3, 4400), (D6, 9999)):
        cash_snapshot(engine, C, day, value)


@pytest.fixture
def engine(database_url: str) -> Iterator[sa.Engine]:
    engine = db.make_engine(database_url)
    migrations.upgrade(database_url, engine)
    load_household(engine)
    yield engine
    engine.dispose()


@pytest.fixture
def cfg(engine: sa.Engine, database_url: str, tmp_path: Path) -> Path:
    return write_config(tmp_path / "config.yaml", {
        "database": {"url": database_url},
        "accounts": [{"user_id": a, "auth": "manual"} for a in (A, B, C)],
    })


@pytest.fixture
def left(cfg: Path) -> Path:
    """CC0003 left the household, through the command (default: the day after its last
    complete snapshot, 11-04... but CC0003 has one on 11-09: --on says when)."""
    result = run_cli("--config", str(cfg), "household", "leave", "cc0003", "--on",
                     "2026-11-05")
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == [
        "CC0003 leaves the household on 2026-11-05: its last value counted, 4,400.00 "
        "(snapshot of 2026-11-04), is a withdrawal from the all-accounts figures on the "
        "first session from then"]
    return cfg


# Every column of portfolio_daily_all: snapshot_date, accounts, holdings_invested,
# holdings_value, holdings_unrealised_pnl, holdings_day_pnl, mf_invested, mf_value,
# positions_pnl, positions_m2m, cash, cash_flow, total_value, accounts_carried,
# accounts_joined, accounts_left.
PORTFOLIO_ALL = [
    # the household's first session: A and C, their own flows (none)
    ("2026-11-02", 2, 0, 0, 0, 0, 0, 0, 0, 0, 14000, 0, 14000, 0, 0, 0),
    # B joins: its whole value, 5000, is a flow in (not a market gain)
    ("2026-11-03", 3, 2800, 3000, 200, 100, 0, 0, 0, 0, 17400, 5000, 20400, 0, 1, 0),
    ("2026-11-04", 3, 2800, 3000, 200, 0, 0, 0, 0, 0, 17400, 0, 20400, 0, 0, 0),
    # B carried at its 11-04 figures (no flow, no day P&L); C leaves: its 4400 flows out
    ("2026-11-05", 1, 2800, 3000, 200, 0, 0, 0, 0, 0, 14100, -4400, 17100, 1, 0, 1),
    # B back: 5500 (its move across the gap, 500, is market P&L); A's pay-in 1000
    ("2026-11-06", 2, 2800, 3500, 700, 100, 0, 0, 0, 0, 15100, 1000, 18600, 0, 0, 0),
    # C's 9999 of 11-09 is after it left: not counted
    ("2026-11-09", 2, 2800, 2400, -400, -1100, 0, 0, 0, 0, 16410, 0, 18810, 0, 0, 0),
]
# nav_daily_all: units 14 at 1000; 11-03 the deposit (B's 5000) buys 5 units at 1000;
# 11-05 the withdrawal (C's 4400) sells at (17100 + 4400) / 19; 11-06 the deposit of 1000
# buys at that NAV.
NAV5 = 21500 / 19
UNITS5 = 19 - 4400 / NAV5
UNITS6 = UNITS5 + 1000 / NAV5
NAV_ALL = [
    ("2026-11-02", 2, 14000, 0, 14, 1000, 0, 0, 0),
    ("2026-11-03", 3, 20400, 5000, 19, 20400 / 19, 0, 1, 0),
    ("2026-11-04", 3, 20400, 0, 19, 20400 / 19, 0, 0, 0),
    ("2026-11-05", 1, 17100, -4400, UNITS5, NAV5, 1, 0, 1),
    ("2026-11-06", 2, 18600, 1000, UNITS6, 18600 / UNITS6, 0, 0, 0),
    ("2026-11-09", 2, 18810, 0, UNITS6, 18810 / UNITS6, 0, 0, 0),
]
PNL_TWR = 1.1 * (1 + 1100 / 20400) * (1 + 500 / 17100) * (1 + 210 / 18600) - 1


def test_household_views_join_gap_and_leave(left: Path, engine: sa.Engine) -> None:
    rows = query(engine, "SELECT * FROM portfolio_daily_all ORDER BY snapshot_date")
    assert [tuple(r.values()) for r in rows] == approx_rows(PORTFOLIO_ALL)
    assert list(rows[0]) == ["snapshot_date", "accounts", "holdings_invested",
                             "holdings_value", "holdings_unrealised_pnl", "holdings_day_pnl",
                             "mf_invested", "mf_value", "positions_pnl", "positions_m2m",
                             "cash", "cash_flow", "total_value", "accounts_carried",
                             "accounts_joined", "accounts_left"]
    nav = query(engine, "SELECT * FROM nav_daily_all ORDER BY snapshot_date")
    assert [tuple(r.values()) for r in nav] == approx_rows(NAV_ALL)
    parts = query(engine, "SELECT account, snapshot_date, source_snapshot_date, carried, "
                          "joined, leaving, cash_flow, total_value FROM household_daily "
                          "WHERE account <> 'AA0001' ORDER BY account, snapshot_date")
    assert [tuple(r.values()) for r in parts] == [
        (B, "2026-11-03", "2026-11-03", 0, 1, 0, 5000, 5000),
        (B, "2026-11-04", "2026-11-04", 0, 0, 0, 0, 5000),
        (B, "2026-11-05", "2026-11-04", 1, 0, 0, 0, 5000),
        (B, "2026-11-06", "2026-11-06", 0, 0, 0, 0, 5500),
        (B, "2026-11-09", "2026-11-09", 0, 0, 0, 0, 4400),
        (C, "2026-11-02", "2026-11-02", 0, 0, 0, 0, 4000),
        (C, "2026-11-03", "2026-11-03", 0, 0, 0, 0, 4400),
        (C, "2026-11-04", "2026-11-04", 0, 0, 0, 0, 4400),
        (C, "2026-11-05", "2026-11-04", 0, 0, 1, -4400, 0),
    ]
    # Per account, pnl_daily keeps its own gaps (B: 11-04 -> 11-06), and C's late one.
    pnl = query(engine, "SELECT account, snapshot_date, previous_snapshot_date, market_pnl "
                        "FROM pnl_daily WHERE account <> 'AA0001' "
                        "ORDER BY account, snapshot_date")
    assert [tuple(r.values()) for r in pnl][2:] == [
        (B, "2026-11-06", "2026-11-04", 500), (B, "2026-11-09", "2026-11-06", -1100),
        (C, "2026-11-02", None, None), (C, "2026-11-03", "2026-11-02", 400),
        (C, "2026-11-04", "2026-11-03", 0), (C, "2026-11-09", "2026-11-04", 5599)]


def test_report_performance_all_through_the_command(left: Path) -> None:
    result = run_cli("--config", str(left), "report", "performance", "--format", "json")
    assert result.returncode == 0, result.stderr
    rows = {r["account"]: r for r in json.loads(result.stdout)}
    got = rows["ALL"]
    assert (got["from"], got["to"]) == ("2026-11-02", "2026-11-09")
    assert (got["start_value"], got["end_value"], got["net_flows"]) == (14000, 18810, 1600)
    # the accounts' own market P&L: A 3410, B -600 (from its join), C 400 (until it left)
    assert got["market_pnl"] == 3410 - 600 + 400
    assert got["twr"] == pytest.approx(PNL_TWR, abs=1e-10)
    assert got["nav_return"] == pytest.approx(18810 / UNITS6 / 1000 - 1, abs=1e-10)
    assert got["max_drawdown"] == 0  # the NAV never falls: 1000, 1073.68, ..., 1115.7
    assert got["carried"] == 1 and rows[A]["carried"] == rows[B]["carried"] == 0
    # the join a deposit, the leave a withdrawal (was +1379% for a join as a gain)
    assert got["xirr"] == pytest.approx(xirr_by_bisection(
        [(D1, -14000), (D2, -5000), (D4, 4400), (D5, -1000), (D6, 18810)]), rel=1e-7)

    table = run_cli("--config", str(left), "report", "performance", "--account", "ALL")
    assert table.returncode == 0, table.stderr
    assert table.stdout.splitlines()[0].split()[-2:] == ["gaps", "carried"]
    assert ("warning: ALL: 1 session(s) counted an account without a complete snapshot at "
            "its last value (2026-11-05: BB0002): a missed login moves no household figure"
            ) in table.stdout


def test_report_summary_all_row_and_its_returns(left: Path) -> None:
    data = run_cli("--config", str(left), "report", "summary", "--format", "json")
    assert data.returncode == 0, data.stderr
    summary = {r["account"]: r for r in json.loads(data.stdout)}
    assert list(summary) == [A, B, C, "ALL"]
    household = summary["ALL"]
    assert (household["last_session"], household["sessions"], household["total_value"],
            household["holdings_value"], household["cash"], household["positions_m2m"],
            household["cash_flow"], household["market_pnl"]) == (
        "2026-11-09", 6, 18810, 2400, 16410, 0, 1600, 3210)
    performance_rows = {r["account"]: r for r in json.loads(run_cli(
        "--config", str(left), "report", "performance", "--format", "json").stdout)}
    for account, row in summary.items():  # the same returns as report performance's
        assert row["return_pct"] == pytest.approx(
            performance_rows[account]["nav_return"] * 100, abs=1e-6), account
        assert row["max_drawdown_pct"] == pytest.approx(
            performance_rows[account]["max_drawdown"] * 100, abs=1e-6), account
        assert row["total_value"] == pytest.approx(
            row["holdings_value"] + row["mf_value"] + row["cash"] + row["positions_m2m"])
    table = run_cli("--config", str(left), "report", "summary")
    assert table.returncode == 0, table.stderr
    lines = table.stdout.splitlines()
    assert "positions_m2m" in lines[0].split()
    assert lines[-1].startswith("note: total_value = holdings_value + mf_value + cash + "
                                "positions_m2m; return_pct and max_drawdown_pct are "
                                "`report performance`'s nav_return and max_drawdown")


def test_charts_follow_the_household(left: Path, engine: sa.Engine, tmp_path: Path) -> None:
    from snapshotter.reports.chart import benchmark_chart_data, chart_data

    summed = chart_data(engine)
    assert list(summed["total_value"]) == [row[12] for row in PORTFOLIO_ALL]
    # no fall to 17100 - 5000 on the gap, no jump on the join: the market moves only
    assert list(summed["cumulative_market_pnl"]) == pytest.approx(
        [0, 1400, 1400, 2500, 3000, 3210])
    assert summed["drawdown"].min() == 0
    with engine.begin() as conn:
        conn.execute(sa.text("INSERT INTO benchmark_daily (name, date, close) "
                             "VALUES ('NIFTY50', :d, 100)"), {"d": D1})
    _, nav, _ = benchmark_chart_data(engine, "NIFTY50")
    assert list(nav["rebased"]) == pytest.approx([row[5] / 10 for row in NAV_ALL])
    for extra in ([], ["--benchmark", "NIFTY50"]):
        result = run_cli("--config", str(left), "chart", "--out", str(tmp_path / "c.png"),
                         *extra)
        assert result.returncode == 0, result.stderr


def test_household_leave_and_rejoin(cfg: Path, database_url: str, engine: sa.Engine) -> None:
    base = ["--config", str(cfg), "household"]
    unknown = run_cli(*base, "leave", "CC0300")
    assert unknown.returncode == 2
    assert "no account 'CC0300'" in unknown.stderr and "did you mean 'CC0003'?" in unknown.stderr
    early = run_cli(*base, "leave", C, "--on", "2026-11-02")
    assert early.returncode == 2 and "Traceback" not in early.stderr
    assert early.stderr.strip().splitlines() == [
        "error: --on 2026-11-02: account CC0003's first complete snapshot is 2026-11-02; "
        "it can leave only after it"]
    # default: the day after its last complete snapshot (11-09: no later session, so
    # the household still counts it there)
    assert run_cli(*base, "leave", C).returncode == 0
    assert query(engine, "SELECT * FROM household_leaves") == [
        {"account": C, "left_on": "2026-11-10"}]
    rows = query(engine, "SELECT total_value FROM portfolio_daily_all ORDER BY snapshot_date")
    assert rows[-1]["total_value"] == 14410 + 4400 + 9999
    back = run_cli(*base, "rejoin", C)
    assert (back.returncode, back.stdout.strip()) == (
        0, "CC0003 counts in the household again (it had left on 2026-11-10)")
    assert query(engine, "SELECT * FROM household_leaves") == []


# --- properties -------------------------------------------------------------------------

def wipe(engine: sa.Engine) -> None:
    with engine.begin() as conn:
        for table in reversed(Base.metadata.sorted_tables):
            conn.execute(table.delete())


def sessions(count: int) -> list[date]:
    days = [D1]
    while len(days) < count:
        days.append(CALENDAR.next_session(days[-1]).day)
    return days


def nav_all(engine: sa.Engine) -> dict[Any, float]:
    return {r["snapshot_date"]: r["nav"] for r in query(
        engine, "SELECT snapshot_date, nav FROM nav_daily_all ORDER BY snapshot_date")}


def all_twr(engine: sa.Engine) -> float:
    frame = performance(engine, CALENDAR, Filters(accounts=("ALL",))).frame
    return float(frame.iloc[0]["twr"])


RUPEES = st.integers(min_value=1000, max_value=100000)
SETTINGS = settings(max_examples=12, deadline=None,
                    suppress_health_check=[HealthCheck.function_scoped_fixture])


@SETTINGS
@given(data=st.data(), accounts=st.integers(2, 3), count=st.integers(3, 5))
def test_a_missed_snapshot_moves_all_by_no_more_than_its_day_move(
        database_url: str, data: st.DataObject, accounts: int, count: int) -> None:
    """Every account from the first session, no flows; one account's snapshot of a later
    session removed (a missed login): ALL's NAV that session differs by at most that
    account's day move (over the household's value), no other session's at all, and
    ALL's TWR by no more."""
    values = [data.draw(st.lists(RUPEES, min_size=count, max_size=count))
              for _ in range(accounts)]
    missing = data.draw(st.integers(0, accounts - 1))
    k = data.draw(st.integers(1, count - 1))
    days = sessions(count)
    engine = db.make_engine(database_url)
    try:
        migrations.upgrade(database_url, engine)
        results = []
        for skip in (None, (missing, k)):
            wipe(engine)
            for i, series in enumerate(values):
                for t, value in enumerate(series):
                    if (i, t) != skip:
                        cash_snapshot(engine, f"PX{i:04d}", days[t], value)
            results.append((nav_all(engine), all_twr(engine)))
        (nav, twr), (nav_gap, twr_gap) = results
        assert list(nav) == list(nav_gap)
        household = [sum(series[t] for series in values) for t in range(count)]
        move = abs(values[missing][k] - values[missing][k - 1]) / household[k]
        for t, day in enumerate(nav):
            bound = move if t == k else 0
            assert abs(nav_gap[day] / nav[day] - 1) <= bound + 1e-12, (t, day)
        assert abs((1 + twr_gap) / (1 + twr) - 1) <= move + 1e-9
    finally:
        engine.dispose()


@SETTINGS
@given(data=st.data(), count=st.integers(3, 6))
def test_an_account_that_starts_late_gives_all_figures_between_the_accounts(
        database_url: str, data: st.DataObject, count: int) -> None:
    """PX0000 from the first session, PX0001 from a later one, no flows: each session,
    ALL's return (the NAV's, and pnl_daily's formula) lies between the accounts' own
    returns (0 for the one joining: its money only arrived), and ALL's market P&L is
    theirs summed."""
    first = data.draw(st.lists(RUPEES, min_size=count, max_size=count))
    start = data.draw(st.integers(1, count - 1))
    late = data.draw(st.lists(RUPEES, min_size=count - start, max_size=count - start))
    days = sessions(count)
    engine = db.make_engine(database_url)
    try:
        migrations.upgrade(database_url, engine)
        wipe(engine)
        for t, value in enumerate(first):
            cash_snapshot(engine, "PX0000", days[t], value)
        for t, value in enumerate(late, start=start):
            cash_snapshot(engine, "PX0001", days[t], value)
        nav = list(nav_all(engine).values())
        value = [first[t] + (late[t - start] if t >= start else 0) for t in range(count)]
        for t in range(1, count):
            own = [first[t] / first[t - 1] - 1]
            if t == start:
                own.append(0.0)
            elif t > start:
                own.append(late[t - start] / late[t - start - 1] - 1)
            flow = late[0] if t == start else 0
            for household in (nav[t] / nav[t - 1] - 1,
                              (value[t] - value[t - 1] - flow) / value[t - 1]):
                assert min(own) - 1e-12 <= household <= max(own) + 1e-12, t
        rows = {r["account"]: r for r in performance(engine, CALENDAR).frame.to_dict(
            "records")}
        assert rows["ALL"]["market_pnl"] == pytest.approx(
            rows["PX0000"]["market_pnl"] + rows["PX0001"]["market_pnl"], abs=1e-6)
    finally:
        engine.dispose()
