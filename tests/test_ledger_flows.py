"""Cash flows across gaps (issue 12, migration 0010): the imported ledger's deposits and
withdrawals are the cash flows of the snapshots it covers, in portfolio_daily, pnl_daily,
nav_daily and `report performance`, against hand-computed figures, on SQLite and
PostgreSQL. The ledger goes in through the real command (`import ledger`).

The history of AA0001, cash only (total_value = cash - payout; the snapshot's own flow
is intraday_payin - payout), stored through the real path (store.store_snapshot):

session  value   Kite shows            the ledger posts            truth
11-02    10000   pay-in 10000          deposit 10000               first snapshot
11-03    11000                                                     +10%
11-04    12100                                                     +10%
11-05    (no snapshot: a gap)          deposit 7900,               Kite never shows the
                                       settlement +250             deposit (pay-ins are
                                                                   intraday only)
11-06    21000                                                     +5% on 12100 + 7900
11-09    23580   pay-in 3000           deposit 3000 (seen by       -2% on 21000, +3000
                                       Kite), deposit 1000 in
                                       the evening (not seen)
11-10    (NSE holiday)
11-11    20000   payout 4580           withdrawal 4580             +1000 (the evening
                                                                   deposit) - 4580: no
                                                                   market move
11-12    20200                         deposit 500 in the          +1%
                                       evening (no snapshot
                                       after it)

The ledger covers 11-02 .. 11-12 (its first and last posting dates). The rule
(portfolio_daily's cash_flow where the ledger covers the days from the previous
snapshot P to the snapshot D): ledger flows posted on P .. D - 1, minus P's own flow,
plus D's own.
"""

from __future__ import annotations

import itertools
import json
import math
import statistics
from collections.abc import Iterator
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from alembic import command

from snapshotter.console import ledger
from snapshotter.normalize import frame_records
from snapshotter.store import engine as db
from snapshotter.store import migrate as migrations
from snapshotter.store import writes as store
from snapshotter.store.models import LedgerEntry
from tests.conftest import run_cli, write_config
from tests.test_returns import approx_rows, cash_snapshot, check, xirr_by_bisection
from tests.test_views import query

A = "AA0001"
D1, D2, D3, GAP, D5, D6, D7, D8 = (date(2026, 11, d) for d in (2, 3, 4, 5, 6, 9, 11, 12))
# (session, total_value, intraday_payin, payout)
HISTORY = [(D1, 10000, 10000, 0), (D2, 11000, 0, 0), (D3, 12100, 0, 0), (D5, 21000, 0, 0),
           (D6, 23580, 3000, 0), (D7, 20000, 0, 4580), (D8, 20200, 0, 0)]

HEADER = "particulars,posting_date,cost_center,voucher_type,debit,credit,net_balance"
LEDGER = [
    "Opening Balance,,,,,,0.00",
    "Funds added using UPI with reference number 000000000901,2026-11-02,NSE-EQ - Z,"
    "Bank Receipts,0.00,10000.00,10000.00",
    "Funds added using UPI with reference number 000000000902,2026-11-05,NSE-EQ - Z,"
    "Bank Receipts,0.00,7900.00,17900.00",
    "Net settlement for Eq 2026213 from 2026-11-04 to 2026-11-04,2026-11-05,NSE-EQ - Z,"
    "Book Voucher,0.00,250.00,18150.00",
    "Funds added using UPI with reference number 000000000903,2026-11-09,NSE-EQ - Z,"
    "Bank Receipts,0.00,3000.00,21150.00",
    "Funds added using UPI with reference number 000000000904,2026-11-09,NSE-EQ - Z,"
    "Bank Receipts,0.00,1000.00,22150.00",
    "Funds transferred back as per your request,2026-11-11,NSE-EQ - Z,Bank Payments,"
    "4580.00,0.00,17570.00",
    "Funds added using UPI with reference number 000000000905,2026-11-12,NSE-EQ - Z,"
    "Bank Receipts,0.00,500.00,18070.00",
    "Closing Balance,,,,,,18070.00",
]


def write_ledger(path: Path, lines: list[str]) -> Path:
    path.write_text("\n".join([HEADER, *lines]) + "\n")
    return path


@pytest.fixture
def engine(database_url: str) -> Iterator[sa.Engine]:
    engine = db.make_engine(database_url)
    migrations.upgrade(database_url, engine)
    for day, value, payin, payout in HISTORY:
        cash_snapshot(engine, A, day, value, payin, payout)
    yield engine
    engine.dispose()


@pytest.fixture
def cfg(engine: sa.Engine, database_url: str, tmp_path: Path) -> Path:
    return write_config(tmp_path / "config.yaml", {
        "database": {"url": database_url},
        "accounts": [{"user_id": A, "auth": "manual"}],
    })


def import_ledger(cfg: Path, path: Path) -> str:
    result = run_cli("--config", str(cfg), "import", "ledger", str(path), "--account", A)
    assert result.returncode == 0, result.stderr
    return result.stdout


def report(cfg: Path, *args: str) -> dict[str, dict[str, Any]]:
    result = run_cli("--config", str(cfg), "report", "performance", "--format", "json", *args)
    assert result.returncode == 0, result.stderr
    return {row["account"]: row for row in json.loads(result.stdout)}


def table(cfg: Path) -> list[str]:
    result = run_cli("--config", str(cfg), "report", "performance")
    assert result.returncode == 0, result.stderr
    return result.stdout.splitlines()


def volatility(returns: list[float]) -> float:
    return statistics.stdev(returns) * math.sqrt(252)


def snapshot_navs(engine: sa.Engine) -> list[tuple[Any, ...]]:
    return [tuple(r.values()) for r in query(
        engine, "SELECT snapshot_id, snapshot_date, units, nav FROM snapshot_nav "
                "ORDER BY snapshot_date")]


# --- without the ledger: the deposit of the missed day is market P&L ---------------------

# Kite's flows only: 11-06 shows 8900 of "market P&L" (7900 of it the deposit), 11-11
# shows the evening deposit of 11-09 as a gain of 1000.
UNITS_OWN = 10 + 3000 / 2100
NAV_OWN = [1000, 1100, 1210, 2100, 2100 * 0.9825, 24580 / UNITS_OWN, 24580 / UNITS_OWN * 1.01]
EXPECTED_OWN = {
    "account": A, "from": "2026-11-02", "to": "2026-11-12",
    "start_value": 10000, "end_value": 20200,
    "net_flows": 3000 - 4580,
    "market_pnl": 20200 - 10000 - (3000 - 4580),                             # 11780
    "twr": 1.1 * 1.1 * (21000 / 12100) * (1 - 420 / 21000) * (1 + 1000 / 23580) * 1.01 - 1,
    "nav_return": NAV_OWN[-1] / 1000 - 1,
    "cagr": (NAV_OWN[-1] / 1000) ** (365 / 10) - 1,
    "max_drawdown": 0.9825 - 1,                                              # 11-09
    "volatility": volatility([b / a - 1 for a, b in itertools.pairwise(NAV_OWN)]),
    "gaps": 1,
}
OWN_FLOWS = [(D1, -10000), (D6, -3000), (D7, 4580), (D8, 20200)]


def test_without_the_ledger_the_missed_deposit_is_market_pnl(cfg: Path,
                                                             engine: sa.Engine) -> None:
    rows = query(engine, "SELECT snapshot_date, cash_flow, market_pnl FROM pnl_daily "
                         "ORDER BY snapshot_date")
    assert [tuple(r.values()) for r in rows] == approx_rows([
        ("2026-11-02", 10000, None), ("2026-11-03", 0, 1000), ("2026-11-04", 0, 1100),
        ("2026-11-06", 0, 8900), ("2026-11-09", 3000, -420), ("2026-11-11", -4580, 1000),
        ("2026-11-12", 0, 200)])
    assert {r["cash_flow_source"] for r in query(
        engine, "SELECT cash_flow_source FROM portfolio_daily")} == {"snapshot"}
    got = report(cfg)
    check(got[A], EXPECTED_OWN)
    # 117% in 10 days: beyond xirr_by_bisection's bracket; the rate's present value is 0
    rate = got[A]["xirr"]
    assert rate > 1e10
    assert sum(cf / (1 + rate) ** ((d - D1).days / 365) for d, cf in OWN_FLOWS) == \
        pytest.approx(0, abs=1e-6)
    assert "warning: AA0001: 1 NSE session(s) in the window have no snapshot (2026-11-05): " \
           "a gap hides that day's cash flows" in "\n".join(table(cfg))


# --- with the ledger ---------------------------------------------------------------------

# The flows (see the module's docstring): 11-03: 0 - 10000 (the 11-02 deposit the first
# snapshot showed) + 10000 (posted 11-02) = 0; 11-06: 7900 (posted 11-05; the settlement
# is no flow); 11-09: its own 3000 (the ledger's 11-09 postings count from the next
# snapshot on); 11-11: -4580 (own) - 3000 (11-09's own) + 3000 + 1000 (posted 11-09) =
# -3580; 11-12: 0 + 4580 - 4580 (posted 11-11, counted by 11-11's payout) = 0.
FLOWS = [10000, 0, 0, 7900, 3000, -3580, 0]
SOURCES = ["snapshot"] + ["ledger"] * 6
MARKET = [None, 1000, 1100, 1000, -420, 0, 200]
RETURNS = [None, 0.1, 0.1, 1000 / 12100, -0.02, 0, 0.01]
TWR = [1, 1.1, 1.21, 1.21 * 13100 / 12100, 1.21 * 13100 / 12100 * 0.98,
       1.21 * 13100 / 12100 * 0.98, 1.21 * 13100 / 12100 * 0.98 * 1.01]
# NAV: 10 units at 1000; 11-06: a deposit of 7900 at 1210: units 10 + 7900 / 1210, nav
# 21000 / units = 1270.5; 11-09: 3000 at 1270.5, nav 23580 / units = 1270.5 * 0.9825;
# 11-11: a withdrawal of 3580 at today's nav (20000 + 3580) / units_prev (unchanged);
# 11-12: +1%.
U5 = 10 + 7900 / 1210
U6 = U5 + 3000 / 1270.5
NAV6 = 1270.5 * 0.9825
U7 = U6 - 3580 / NAV6
NAV = [(10, 1000), (10, 1100), (10, 1210), (U5, 1270.5), (U6, NAV6), (U7, NAV6),
       (U7, NAV6 * 1.01)]
EXPECTED = {
    "account": A, "from": "2026-11-02", "to": "2026-11-12",
    "start_value": 10000, "end_value": 20200,
    "net_flows": 7900 + 3000 - 3580,                                         # 7320
    "market_pnl": 20200 - 10000 - 7320,                                      # 2880
    "twr": TWR[-1] - 1,
    "nav_return": NAV6 * 1.01 / 1000 - 1,
    "cagr": (NAV6 * 1.01 / 1000) ** (365 / 10) - 1,
    "max_drawdown": 0.9825 - 1,                                              # 11-09
    "volatility": volatility([0.1, 0.1, 0.05, -0.0175, 0, 0.01]),
    "gaps": 1,                                                               # 11-05
}
# XIRR on the snapshot dates the flows are assigned to (11-05's deposit on 11-06).
LEDGER_FLOWS = [(D1, -10000), (D5, -7900), (D6, -3000), (D7, 3580), (D8, 20200)]


def test_the_ledger_gives_the_flows_of_the_missed_day(cfg: Path, engine: sa.Engine,
                                                      tmp_path: Path) -> None:
    path = write_ledger(tmp_path / "ledger.csv", LEDGER)
    assert import_ledger(cfg, path).splitlines() == [
        f"{path}: 7 new, 0 already known (deposit 5, withdrawal 1, settlement 1)"]

    rows = query(engine, "SELECT p.snapshot_date, p.cash_flow, p.cash_flow_source, "
                         "d.market_pnl, d.daily_return, d.twr_index, d.drawdown "
                         "FROM portfolio_daily p JOIN pnl_daily d "
                         "ON d.snapshot_id = p.snapshot_id ORDER BY p.snapshot_date")
    days = [day.isoformat() for day, *_ in HISTORY]
    peak = [max(TWR[:i + 1]) for i in range(len(TWR))]
    assert [tuple(r.values()) for r in rows] == approx_rows([
        (d, f, s, m, r, t, t / p - 1) for d, f, s, m, r, t, p
        in zip(days, FLOWS, SOURCES, MARKET, RETURNS, TWR, peak, strict=True)])
    nav = query(engine, "SELECT snapshot_date, total_value, cash_flow, units, nav, "
                        "cash_flow_source FROM nav_daily ORDER BY snapshot_date")
    assert [tuple(r.values()) for r in nav] == approx_rows([
        (d, v, f, u, n, s) for d, (_, v, *_), f, (u, n), s
        in zip(days, HISTORY, FLOWS, NAV, SOURCES, strict=True)])
    assert query(engine, "SELECT snapshot_date, previous_snapshot_date, cash_flow "
                         "FROM ledger_flows WHERE snapshot_date = '2026-11-06'") == [
        {"snapshot_date": "2026-11-06", "previous_snapshot_date": "2026-11-04",
         "cash_flow": 7900}]
    assert query(engine, "SELECT first_date, last_date FROM console_files") == [
        {"first_date": "2026-11-02", "last_date": "2026-11-12"}]

    got = report(cfg)
    assert list(got) == [A, "ALL"]
    for account in (A, "ALL"):
        check(got[account], {**EXPECTED, "account": account})
        assert got[account]["xirr"] == pytest.approx(xirr_by_bisection(LEDGER_FLOWS),
                                                     rel=1e-7)
    lines = table(cfg)
    assert not [line for line in lines if line.startswith("warning:")]
    assert lines[-2:] == [
        f"note: {account}: 1 NSE session(s) in the window have no snapshot (2026-11-05); "
        "their cash flows come from the imported ledger" for account in (A, "ALL")]

    # Importing the same export again changes nothing: no new row, the same flows, the
    # NAV rows untouched (the same snapshots, the same bits).
    navs = snapshot_navs(engine)
    flows = query(engine, "SELECT * FROM ledger_flows ORDER BY snapshot_date")
    assert import_ledger(cfg, path).splitlines() == [
        f"{path}: 0 new, 7 already known (deposit 5, withdrawal 1, settlement 1)"]
    assert snapshot_navs(engine) == navs
    assert query(engine, "SELECT * FROM ledger_flows ORDER BY snapshot_date") == flows
    check(report(cfg)[A], EXPECTED)


def test_coverage_runs_from_the_first_to_the_last_posting_date(cfg: Path, engine: sa.Engine,
                                                               tmp_path: Path) -> None:
    """An export up to 11-05 covers 11-02 .. 11-05: the snapshots of 11-03 and 11-04 take
    their flows from it, not 11-06 (the ledger says nothing of 11-06 yet): the gap still
    warns. An overlapping later export (its first lines already known) covers the rest."""
    early = write_ledger(tmp_path / "ledger-early.csv", [
        *LEDGER[:4], "Closing Balance,,,,,,18150.00"])
    assert import_ledger(cfg, early).splitlines()[0].startswith(f"{early}: 3 new, 0 already")
    sources = query(engine, "SELECT snapshot_date, cash_flow, cash_flow_source "
                            "FROM portfolio_daily ORDER BY snapshot_date")
    assert [tuple(r.values()) for r in sources][:4] == [
        ("2026-11-02", 10000, "snapshot"), ("2026-11-03", 0, "ledger"),
        ("2026-11-04", 0, "ledger"), ("2026-11-06", 0, "snapshot")]
    got = report(cfg)
    check(got[A], {"net_flows": EXPECTED_OWN["net_flows"],
                   "market_pnl": EXPECTED_OWN["market_pnl"]})
    assert "warning: AA0001: 1 NSE session(s) in the window have no snapshot" in \
        "\n".join(table(cfg))

    later = write_ledger(tmp_path / "ledger.csv", LEDGER)
    assert import_ledger(cfg, later).splitlines()[0].startswith(f"{later}: 4 new, 3 already")
    check(report(cfg)[A], EXPECTED)
    assert [tuple(r.values()) for r in query(
        engine, "SELECT snapshot_date, units, nav FROM nav_daily ORDER BY snapshot_date")] \
        == approx_rows([(day.isoformat(), u, n) for (day, *_), (u, n)
                        in zip(HISTORY, NAV, strict=True)])


def test_two_exports_with_days_between_them_leave_those_days_uncovered(
        cfg: Path, engine: sa.Engine, tmp_path: Path) -> None:
    """Exports of 11-02 .. 11-04 and 11-09 .. 11-12: the snapshot of 11-06 (previous
    snapshot 11-04) and that of 11-09 (previous 11-06) have days no export covers: their
    own flows; the others the ledger's."""
    first = write_ledger(tmp_path / "first.csv", [
        "Opening Balance,,,,,,0.00", LEDGER[1],
        "DP Charges for Sale of NESTLEIND on 03/11/2026,2026-11-04,NSE-EQ - Z,Journal Entry,"
        "15.93,0.00,9984.07", "Closing Balance,,,,,,9984.07"])
    second = write_ledger(tmp_path / "second.csv", [
        "Opening Balance,,,,,,18150.00", *LEDGER[4:]])
    import_ledger(cfg, first)
    import_ledger(cfg, second)
    rows = query(engine, "SELECT cash_flow, cash_flow_source FROM portfolio_daily "
                         "ORDER BY snapshot_date")
    assert [tuple(r.values()) for r in rows] == [
        (10000, "snapshot"), (0, "ledger"), (0, "ledger"), (0, "snapshot"),
        (3000, "snapshot"), (-3580, "ledger"), (0, "ledger")]


def test_storing_a_snapshot_of_a_covered_session_reassigns_the_flows(
        cfg: Path, engine: sa.Engine, tmp_path: Path) -> None:
    """After the import, the missed session's snapshot is stored after all (a recovered
    attempt, or `run --force` that day), with the deposit as its pay-in: the deposit
    counts on 11-05 (once: 11-06's flow becomes 0) and the later NAVs stand."""
    import_ledger(cfg, write_ledger(tmp_path / "ledger.csv", LEDGER))
    cash_snapshot(engine, A, GAP, 20000, payin=7900)
    rows = query(engine, "SELECT snapshot_date, cash_flow, cash_flow_source, units, nav "
                         "FROM nav_daily WHERE snapshot_date BETWEEN '2026-11-04' AND "
                         "'2026-11-09' ORDER BY snapshot_date")
    assert [tuple(r.values())[1:] for r in rows] == approx_rows([
        (0.0, "ledger", 10.0, 1210.0), (7900.0, "ledger", U5, 1210.0),
        (0.0, "ledger", U5, 1270.5), (3000.0, "ledger", U6, NAV6)])
    # No gap now; pnl_daily counts the deposit from the day after it (11-05: 0%, 11-06:
    # 1000 / 20000), as it does any deposit Kite shows.
    check(report(cfg)[A], {**EXPECTED, "gaps": 0, "twr": 1.21 * 1.05 * 0.98 * 1.01 - 1,
                           "volatility": volatility([0.1, 0.1, 0, 0.05, -0.0175, 0, 0.01])})
    assert not [line for line in table(cfg) if line.startswith(("warning:", "note:"))]


def test_0010_fills_the_flows_of_a_ledger_imported_before(database_url: str,
                                                          monkeypatch: pytest.MonkeyPatch,
                                                          tmp_path: Path) -> None:
    """History and a ledger stored at revision 0009 (no ledger_flows): upgrading fills
    the files' ranges, the flows and the NAVs as an import does; downgrading gives the
    snapshots' own flows back."""
    engine = db.make_engine(database_url)
    cfg = migrations.alembic_config(database_url)

    def migrate(to: str, how: Any = command.upgrade) -> None:
        with engine.begin() as conn:
            cfg.attributes["connection"] = conn
            how(cfg, to)

    try:
        migrate("0009")
        with monkeypatch.context() as m:  # store as it was at 0009: no ledger_flows
            m.setattr(store, "_insert_flows", lambda session, account, start: None)
            for day, value, payin, payout in HISTORY:
                cash_snapshot(engine, A, day, value, payin, payout)
        parsed = ledger.parse(write_ledger(tmp_path / "ledger.csv", LEDGER).read_bytes(),
                              "ledger.csv")
        with engine.begin() as conn:  # as import stored it at 0009
            file_id = conn.execute(sa.text(
                "INSERT INTO console_files (account, kind, file_name, sha256, imported_at, "
                "rows, new_rows) VALUES (:a, 'ledger', 'ledger.csv', 'x', :t, 7, 7) "
                "RETURNING id"), {"a": A, "t": datetime(2026, 11, 13, tzinfo=UTC)}
            ).scalar_one()
            conn.execute(sa.insert(LedgerEntry.__table__), frame_records(
                parsed.frame.drop(columns="line"),
                {"account": A, "file_id": file_id, "source_file": "ledger.csv"}))
        own = [tuple(r.values()) for r in query(
            engine, "SELECT cash_flow, units, nav FROM nav_daily ORDER BY snapshot_date")]

        migrate("head")
        rows = query(engine, "SELECT cash_flow, cash_flow_source, units, nav FROM nav_daily "
                             "ORDER BY snapshot_date")
        assert [tuple(r.values()) for r in rows] == approx_rows([
            (f, s, u, n) for f, s, (u, n) in zip(FLOWS, SOURCES, NAV, strict=True)])

        migrate("0009", command.downgrade)
        assert [tuple(r.values()) for r in query(
            engine, "SELECT cash_flow, units, nav FROM nav_daily ORDER BY snapshot_date")] \
            == own
        assert own[3][0] == 0  # 11-06: the snapshot's own flow again
    finally:
        engine.dispose()
