"""The SQL views (migrations 0002, 0003) and the ``snapshot_totals`` table they read,
against hand-computed figures, on SQLite and PostgreSQL.

The scenario is stored through the real path (normalize_all -> store.store_snapshot, and
store.record_failure), from Kite-like payloads:

account AA0001                              account BB0002
  11-02  first snapshot                       11-02  empty account (total value 0)
  11-03  deposit 20000, T+1 buy of 5 INFY,    11-03  deposit 10000 (previous total 0:
         an MIS trade; taken twice (the              no return, TWR carried)
         first one is superseded)
  11-04  no snapshot (missed session)         11-04  no snapshot
  11-05  failed snapshot                      11-05  T+1 buy of 4 RELIANCE
  11-06  sale of 5 INFY (day position),       11-06  no snapshot
         TCS split 1:2, withdrawal 5000,
         Kite's TCS pnl stale
  11-09  sale of 2 INFY (no day position      11-09  sale of 1 RELIANCE (no day
         today: yesterday's), TCS sold out            position: close price), an
         (no day position: last price),               intraday snapshot (not final)
         Kite's INFY day_change off
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator
from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import sqlalchemy as sa
from alembic import command
from alembic.script import ScriptDirectory

from snapshotter.normalize import normalize_all
from snapshotter.store import engine as db
from snapshotter.store import migrate as migrations
from snapshotter.store import views
from snapshotter.store import writes as store
from snapshotter.store.models import DATA_TABLES
from tests.conftest import create_pg_database, drop_pg_database

A, B = "AA0001", "BB0002"
D1, D2, D3, D4, D5, D6 = (date(2026, 11, 2), date(2026, 11, 3), date(2026, 11, 4),
                          date(2026, 11, 5), date(2026, 11, 6), date(2026, 11, 9))


# --- Kite-like payloads ----------------------------------------------------------------

def holding(symbol: str, quantity: int, average: float, last: float, close: float, *,
            t1: int = 0, pnl: float | None = None, day_change: float | None = None,
            exchange: str = "NSE") -> dict[str, Any]:
    """One /portfolio/holdings record; pnl and day_change as Kite computes them unless given."""
    return {
        "tradingsymbol": symbol, "exchange": exchange, "isin": f"INE{symbol:0>9}",
        "product": "CNC", "quantity": quantity, "t1_quantity": t1, "used_quantity": 0,
        "average_price": average, "last_price": last, "close_price": close,
        "pnl": (last - average) * quantity if pnl is None else pnl,
        "day_change": last - close if day_change is None else day_change,
    }


def position(symbol: str, product: str, *, quantity: int = 0, pnl: float = 0.0,
             m2m: float = 0.0, buy: tuple[int, float] = (0, 0.0),
             sell: tuple[int, float] = (0, 0.0), day_sell: tuple[int, float] | None = None,
             ) -> dict[str, Any]:
    day_sell = sell if day_sell is None else day_sell
    return {
        "tradingsymbol": symbol, "exchange": "NSE", "product": product, "quantity": quantity,
        "multiplier": 1, "pnl": pnl, "m2m": m2m,
        "buy_quantity": buy[0], "buy_price": buy[1], "buy_value": buy[0] * buy[1],
        "sell_quantity": sell[0], "sell_price": sell[1], "sell_value": sell[0] * sell[1],
        "day_buy_quantity": buy[0], "day_buy_price": buy[1],
        "day_sell_quantity": day_sell[0], "day_sell_price": day_sell[1],
    }


def margins(cash: float, *, payin: float = 0.0, payout: float = 0.0) -> dict[str, Any]:
    def segment(cash: float, payin: float, payout: float) -> dict[str, Any]:
        return {"enabled": True, "net": cash - payout,
                "available": {"cash": cash, "intraday_payin": payin,
                              "opening_balance": cash - payin, "live_balance": cash - payout},
                "utilised": {"payout": payout, "debits": 0}}
    return {"equity": segment(cash, payin, payout), "commodity": segment(0.0, 0.0, 0.0)}


def mf(quantity: float, average: float, last: float) -> dict[str, Any]:
    return {"folio": "F1", "fund": "An index fund", "tradingsymbol": "INF000A01",
            "quantity": quantity, "average_price": average, "last_price": last,
            "pnl": (last - average) * quantity}


def snapshot(engine: sa.Engine, account: str, day: date, *, holdings: list[Any] | None = None,
             net: list[Any] | None = None, day_positions: list[Any] | None = None,
             funds: dict[str, Any] | None = None, mf_holdings: list[Any] | None = None,
             final: bool = True) -> None:
    payloads = {"holdings": holdings or [],
                "positions": {"net": net or [], "day": day_positions or []},
                "margins": funds if funds is not None else margins(0.0),
                "mf_holdings": mf_holdings or []}
    store.store_snapshot(engine, account=account, snapshot_date=day,
                         taken_at=datetime(day.year, day.month, day.day, 11, 0, tzinfo=UTC),
                         final=final, payloads=payloads,
                         frames=normalize_all(payloads, account, day))


def load_scenario(engine: sa.Engine) -> None:
    # AA0001, 11-02. Kite's INFY pnl 1003 vs ours (1600 - 1500) * 10 = 1000: off by 3 > 1,
    # but within 0.5% of 1003 (5.015): not a reconciliation row.
    snapshot(engine, A, D1, holdings=[
        holding("INFY", 10, 1500, 1600, 1580, pnl=1003),
        holding("TCS", 5, 3000, 3100, 3050),
    ], mf_holdings=[mf(100, 50, 55)], funds=margins(10000))
    # AA0001, 11-03, first (intraday) attempt: replaced below, so none of it may show.
    snapshot(engine, A, D2, holdings=[
        holding("INFY", 10, 1500, 1000, 1600, pnl=99999),
        holding("TCS", 1, 3000, 1, 3100),
    ], funds=margins(999), final=False)
    # AA0001, 11-03: deposit 20000; 5 INFY bought at 1620 (T+1: t1_quantity, new average
    # (10 * 1500 + 5 * 1620) / 15 = 1540); an MIS trade in SBIN (m2m 150) and the CNC buy
    # (m2m 40, not counted: CNC).
    snapshot(engine, A, D2, holdings=[
        holding("INFY", 10, 1540, 1620, 1600, t1=5),
        holding("TCS", 5, 3000, 3000, 3100),
    ], net=[
        position("INFY", "CNC", quantity=5, buy=(5, 1620), m2m=40),
        position("SBIN", "MIS", pnl=150, m2m=150, buy=(10, 600), sell=(10, 615)),
    ], day_positions=[
        position("INFY", "CNC", quantity=5, buy=(5, 1620)),
        position("SBIN", "MIS", pnl=150, m2m=150, buy=(10, 600), sell=(10, 615)),
    ], mf_holdings=[mf(100, 50, 56)], funds=margins(21900, payin=20000))
    # AA0001, 11-05: the snapshot failed.
    store.record_failure(engine, account=A, snapshot_date=D4,
                         taken_at=datetime(2026, 11, 5, 11, 0, tzinfo=UTC), error="ReadTimeout")
    # AA0001, 11-06: 5 INFY sold (day position: day_sell_price 1700, sell_price 1699);
    # TCS split 1:2 (5 @ 3000 -> 10 @ 1500), Kite's pnl for it stale (500; ours
    # (1520 - 1500) * 10 = 200); withdrawal of 5000.
    snapshot(engine, A, D5, holdings=[
        holding("INFY", 10, 1540, 1700, 1650),
        holding("TCS", 10, 1500, 1520, 1510, pnl=500),
    ], net=[
        position("INFY", "CNC", quantity=-5, sell=(5, 1699), day_sell=(5, 1700)),
    ], day_positions=[
        position("INFY", "CNC", quantity=-5, sell=(5, 1699), day_sell=(5, 1700)),
    ], mf_holdings=[mf(100, 50, 57)], funds=margins(30400, payout=5000))
    # AA0001, 11-09: 2 INFY sold with no day position today (yesterday's: 1700); TCS gone
    # (no day position either day: its last price 1520); Kite's INFY day_change -12.5
    # (ours 1690 - 1700 = -10).
    snapshot(engine, A, D6, holdings=[
        holding("INFY", 8, 1540, 1690, 1700, day_change=-12.5),
    ], mf_holdings=[mf(100, 50, 58)], funds=margins(40000))

    # BB0002, 11-02: an empty account.
    snapshot(engine, B, D1)
    # BB0002, 11-03: deposit 10000.
    snapshot(engine, B, D2, funds=margins(10000, payin=10000))
    # BB0002, 11-05: 4 RELIANCE bought at 2500 (T+1 only; Kite's pnl counts quantity: 0).
    # The CNC position's pnl (200) counts in positions_pnl, its m2m does not.
    snapshot(engine, B, D4, holdings=[
        holding("RELIANCE", 0, 2500, 2550, 2500, t1=4),
    ], net=[
        position("RELIANCE", "CNC", quantity=4, buy=(4, 2500), pnl=200, m2m=200),
    ], day_positions=[
        position("RELIANCE", "CNC", quantity=4, buy=(4, 2500), pnl=200, m2m=200),
    ], funds=margins(0))
    # BB0002, 11-09 (intraday): 1 RELIANCE sold, no sell in any day position (11-05's
    # is a buy): valued at today's close_price 2560.
    snapshot(engine, B, D6, holdings=[
        holding("RELIANCE", 3, 2500, 2580, 2560),
    ], funds=margins(2560), final=False)


def load_trade_positions(engine: sa.Engine) -> None:
    """What an imported tradebook of AA0001 would imply (``trade_positions``, which the
    FIFO rebuild fills; tests/test_console.py builds it from real imports), for
    ``trade_reconciliation``: INFY 10 without the T+1 buy of 11-03, then 8 after the
    sales; 3 NOTHELD the snapshots never show."""
    rows = [("INE00000INFY", D1, D5, "INFY", 10.0), ("INE00000INFY", D5, None, "INFY", 8.0),
            ("NOTHELD", D2, None, "NOTHELD", 3.0)]
    with engine.begin() as conn:
        conn.execute(sa.text(
            "INSERT INTO trade_positions (account, instrument, from_date, to_date, "
            "tradingsymbol, isin, quantity) VALUES (:a, :i, :f, :t, :s, :isin, :q)"),
            [{"a": A, "i": i, "f": f, "t": t, "s": sym, "q": q,
              "isin": i if i.startswith("INE") else None} for i, f, t, sym, q in rows])


@pytest.fixture
def engine(database_url: str) -> Iterator[sa.Engine]:
    engine = db.make_engine(database_url)
    migrations.upgrade(database_url, engine)
    load_scenario(engine)
    yield engine
    engine.dispose()


def plain(value: Any) -> Any:
    """A value as the tests compare it: dates as ISO text (SQLite's form)."""
    return value.isoformat() if isinstance(value, date) else value


def query(engine: sa.Engine, sql: str) -> list[dict[str, Any]]:
    with engine.connect() as conn:
        return [{k: plain(v) for k, v in row._mapping.items()}
                for row in conn.execute(sa.text(sql))]


def pick(rows: list[dict[str, Any]], *columns: str) -> list[tuple[Any, ...]]:
    return [tuple(row[c] for c in columns) for row in rows]


# --- the views -------------------------------------------------------------------------

def test_portfolio_daily(engine: sa.Engine) -> None:
    rows = query(engine, "SELECT * FROM portfolio_daily ORDER BY account, snapshot_date")
    columns = ("account", "snapshot_date", "final", "holdings_invested", "holdings_value",
               "holdings_unrealised_pnl", "holdings_day_pnl", "mf_invested", "mf_value",
               "positions_pnl", "positions_m2m", "cash", "cash_flow", "total_value")
    assert pick(rows, *columns) == [
        # invested 10*1500 + 5*3000; value 10*1600 + 5*3100; day 10*20 + 5*50;
        # MF 100*50, 100*55; total 31500 + 5500 + 10000 + 0
        (A, "2026-11-02", 1, 30000, 31500, 1500, 450, 5000, 5500, 0, 0, 10000, 0, 47000),
        # invested (10+5)*1540 + 5*3000; value 15*1620 + 5*3000; day 15*20 + 5*(-100);
        # positions pnl 0 + 150, m2m 150 (INFY's 40 is CNC); total 39300 + 5600 + 21900 + 150
        (A, "2026-11-03", 1, 38100, 39300, 1200, -200, 5000, 5600, 150, 150, 21900, 20000,
         66950),
        # (11-04 missed, 11-05 failed: no rows) invested 10*1540 + 10*1500; value
        # 10*1700 + 10*1520; day 10*50 + 10*10; cash 30400 - 5000; total 32200+5700+25400
        (A, "2026-11-06", 1, 30400, 32200, 1800, 600, 5000, 5700, 0, 0, 25400, -5000, 63300),
        # invested 8*1540, value 8*1690, day 8*(-10); total 13520 + 5800 + 40000
        (A, "2026-11-09", 1, 12320, 13520, 1200, -80, 5000, 5800, 0, 0, 40000, 0, 59320),
        (B, "2026-11-02", 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0),
        (B, "2026-11-03", 1, 0, 0, 0, 0, 0, 0, 0, 0, 10000, 10000, 10000),
        # T+1 only: invested 4*2500, value 4*2550, day 4*50; CNC position pnl 200, m2m 0
        (B, "2026-11-05", 1, 10000, 10200, 200, 200, 0, 0, 200, 0, 0, 0, 10200),
        # invested 3*2500, value 3*2580, day 3*20; total 7740 + 2560; intraday: final 0
        (B, "2026-11-09", 0, 7500, 7740, 240, 60, 0, 0, 0, 0, 2560, 0, 10300),
    ]
    assert all(isinstance(row["total_value"], float) for row in rows)
    dates = {row["snapshot_date"] for row in rows if row["account"] == A}
    assert D3.isoformat() not in dates and D4.isoformat() not in dates  # missed, failed


def test_portfolio_daily_all(engine: sa.Engine) -> None:
    rows = query(engine, "SELECT * FROM portfolio_daily_all ORDER BY snapshot_date")
    assert pick(rows, "snapshot_date", "accounts", "accounts_carried", "holdings_value",
                "cash", "cash_flow", "positions_pnl", "total_value") == [
        ("2026-11-02", 2, 0, 31500, 10000, 0, 0, 47000),          # 47000 + 0
        ("2026-11-03", 2, 0, 39300, 31900, 30000, 150, 76950),    # 66950 + 10000
        # AA0001 failed: its 11-03 figures carried (no flow) + BB0002's 11-05
        ("2026-11-05", 1, 1, 49500, 21900, 0, 350, 77150),       # 66950 + 10200
        # AA0001's own (its withdrawal) + BB0002's 11-05 carried
        ("2026-11-06", 1, 1, 42400, 25400, -5000, 200, 73500),   # 63300 + 10200
        ("2026-11-09", 2, 0, 21260, 42560, 0, 0, 69620),          # 59320 + 10300
    ]


def test_pnl_daily(engine: sa.Engine) -> None:
    rows = query(engine, "SELECT * FROM pnl_daily ORDER BY account, snapshot_date")
    columns = ("account", "snapshot_date", "previous_snapshot_date", "previous_total_value",
               "total_value", "value_change", "cash_flow", "market_pnl")
    assert pick(rows, *columns) == [
        (A, "2026-11-02", None, None, 47000, None, 0, None),
        # 66950 - 47000 = 19950; market 19950 - 20000 (deposit)
        (A, "2026-11-03", "2026-11-02", 47000, 66950, 19950, 20000, -50),
        # previous: 11-03 (11-04 missed, 11-05 failed); -3650 - (-5000) (withdrawal)
        (A, "2026-11-06", "2026-11-03", 66950, 63300, -3650, -5000, 1350),
        (A, "2026-11-09", "2026-11-06", 63300, 59320, -3980, 0, -3980),
        (B, "2026-11-02", None, None, 0, None, 0, None),
        (B, "2026-11-03", "2026-11-02", 0, 10000, 10000, 10000, 0),
        (B, "2026-11-05", "2026-11-03", 10000, 10200, 200, 0, 200),
        (B, "2026-11-09", "2026-11-05", 10200, 10300, 100, 0, 100),
    ]
    returns = pick(rows, "daily_return", "twr_index", "drawdown")
    expected = [
        (None, 1.0, 0.0),
        # -50 / 47000; twr 1 - 50/47000; drawdown twr / 1 - 1
        (-0.0010638297872340426, 0.9989361702, -0.0010638298),
        # 1350 / 66950; twr 0.99893617... * (1 + 1350/66950): a new high
        (0.020164301717699777, 1.0190790205, 0.0),
        # -3980 / 63300; twr 1.01907902... * (1 - 3980/63300); 0.9550042259 / 1.0190790205 - 1
        (-0.06287519747235387, 0.9550042259, -0.0628751974),
        (None, 1.0, 0.0),
        # previous total 0: no return, the index carried
        (None, 1.0, 0.0),
        # 200 / 10000
        (0.02, 1.02, 0.0),
        # 100 / 10200; 1.02 * (1 + 100/10200) = 1.03
        (0.00980392156862745, 1.03, 0.0),
    ]
    assert len(returns) == len(expected)
    for got, want in zip(returns, expected, strict=True):
        assert got == pytest.approx(want, abs=1e-9)


def test_holding_daily(engine: sa.Engine) -> None:
    rows = query(engine, "SELECT * FROM holding_daily "
                         "ORDER BY account, snapshot_date, tradingsymbol")
    assert pick(rows, "account", "snapshot_date", "tradingsymbol", "quantity", "t1_quantity",
                "previous_snapshot_date", "previous_quantity", "quantity_change", "value") == [
        (A, "2026-11-02", "INFY", 10, 0, None, None, None, 16000),   # first: no change
        (A, "2026-11-02", "TCS", 5, 0, None, None, None, 15500),
        (A, "2026-11-03", "INFY", 15, 5, "2026-11-02", 10, 5, 24300),  # 10 + 5 T+1
        (A, "2026-11-03", "TCS", 5, 0, "2026-11-02", 5, 0, 15000),
        (A, "2026-11-06", "INFY", 10, 0, "2026-11-03", 15, -5, 17000),
        (A, "2026-11-06", "TCS", 10, 0, "2026-11-03", 5, 5, 15200),   # the split
        (A, "2026-11-09", "INFY", 8, 0, "2026-11-06", 10, -2, 13520),
        (B, "2026-11-05", "RELIANCE", 4, 4, "2026-11-03", 0, 4, 10200),  # not held before
        (B, "2026-11-09", "RELIANCE", 3, 0, "2026-11-05", 4, -1, 7740),
    ]
    # value / the account's holdings value that day (portfolio_daily.holdings_value)
    assert [row["weight"] for row in rows] == pytest.approx([
        16000 / 31500, 15500 / 31500, 24300 / 39300, 15000 / 39300,
        17000 / 32200, 15200 / 32200, 1.0, 1.0, 1.0], abs=1e-12)
    infy = rows[2]  # AA0001 11-03: 15 INFY @ 1540, last 1620, close 1600
    assert (infy["average_price"], infy["price"], infy["close_price"]) == (1540, 1620, 1600)
    assert infy["invested"] == 23100       # 15 * 1540
    assert infy["unrealised_pnl"] == 1200  # 15 * (1620 - 1540)
    assert infy["day_pnl"] == 300          # 15 * (1620 - 1600)


def test_realised_estimate(engine: sa.Engine) -> None:
    rows = query(engine, "SELECT * FROM realised_estimate "
                         "ORDER BY account, snapshot_date, tradingsymbol")
    assert pick(rows, "account", "snapshot_date", "previous_snapshot_date", "tradingsymbol",
                "previous_quantity", "quantity", "quantity_sold", "sell_price", "price_source",
                "average_price", "realised_pnl_estimate", "is_estimate") == [
        # 15 -> 10; today's day position: day_sell_price 1700 (not sell_price 1699);
        # 5 * (1700 - 1540). TCS 5 -> 10 (split) is no sale.
        (A, "2026-11-06", "2026-11-03", "INFY", 15, 10, 5, 1700, "day_position", 1540, 800, 1),
        # 10 -> 8; no day position today, yesterday's: 2 * (1700 - 1540)
        (A, "2026-11-09", "2026-11-06", "INFY", 10, 8, 2, 1700, "day_position", 1540, 320, 1),
        # 10 -> gone; no day position either day: its last price then; 10 * (1520 - 1500)
        (A, "2026-11-09", "2026-11-06", "TCS", 10, 0, 10, 1520, "close", 1500, 200, 1),
        # 4 -> 3; 11-05's day position is a buy: today's close_price; 1 * (2560 - 2500)
        (B, "2026-11-09", "2026-11-05", "RELIANCE", 4, 3, 1, 2560, "close", 2500, 60, 1),
    ]


def test_a_symbol_held_on_nse_and_bse_at_once(database_url: str) -> None:
    """INFY on both exchanges in one account: each view keeps the two holdings apart
    (the previous snapshot's holding is found by exchange as well as symbol)."""
    engine = db.make_engine(database_url)
    try:
        migrations.upgrade(database_url, engine)
        snapshot(engine, A, D1, funds=margins(1000), holdings=[
            holding("INFY", 10, 1500, 1600, 1590, exchange="NSE"),
            holding("INFY", 4, 1480, 1601, 1592, exchange="BSE")])
        snapshot(engine, A, D2, funds=margins(1000), holdings=[
            holding("INFY", 12, 1500, 1610, 1600, exchange="NSE"),
            holding("INFY", 1, 1480, 1611, 1601, exchange="BSE")])
        rows = query(engine, "SELECT * FROM holding_daily "
                             "ORDER BY snapshot_date, exchange")
        assert pick(rows, "snapshot_date", "exchange", "quantity", "previous_quantity",
                    "quantity_change", "value") == [
            ("2026-11-02", "BSE", 4, None, None, 6404),
            ("2026-11-02", "NSE", 10, None, None, 16000),
            ("2026-11-03", "BSE", 1, 4, -3, 1611),
            ("2026-11-03", "NSE", 12, 10, 2, 19320),
        ]
        sold = query(engine, "SELECT * FROM realised_estimate")
        # 4 -> 1 on BSE, at today's close: 3 * (1601 - 1480); NSE rose: no sale
        assert pick(sold, "exchange", "previous_quantity", "quantity", "quantity_sold",
                    "realised_pnl_estimate") == [("BSE", 4, 1, 3, 363)]
        assert query(engine, "SELECT * FROM corporate_actions") == []
        [day] = query(engine, "SELECT holdings_value FROM portfolio_daily "
                              "WHERE snapshot_date = '2026-11-03'")
        assert day["holdings_value"] == 19320 + 1611
    finally:
        engine.dispose()


def test_corporate_actions(engine: sa.Engine) -> None:
    rows = query(engine, "SELECT * FROM corporate_actions ORDER BY account, snapshot_date")
    # TCS 5 @ 3000 -> 10 @ 1500: ratio 10 / 5 = 2, 2 * 1500 / 3000 = 1. (INFY 15 -> 10 @
    # 1540 both days: ratio 2/3 but the price did not move: a sale, not listed.)
    assert pick(rows, "account", "snapshot_date", "previous_snapshot_date", "exchange",
                "tradingsymbol", "ratio", "old_quantity", "new_quantity", "old_average_price",
                "new_average_price") == [
        (A, "2026-11-06", "2026-11-03", "NSE", "TCS", 2.0, 5, 10, 3000, 1500),
    ]


def test_reconciliation(engine: sa.Engine) -> None:
    rows = query(engine, "SELECT * FROM reconciliation ORDER BY account, snapshot_date")
    assert pick(rows, "account", "snapshot_date", "tradingsymbol", "field", "ours", "kite",
                "difference") == [
        # (1520 - 1500) * 10 = 200 vs Kite's stale 500
        (A, "2026-11-06", "TCS", "pnl", 200, 500, -300),
        # 1690 - 1700 = -10 vs Kite's -12.5
        (A, "2026-11-09", "INFY", "day_change", -10, -12.5, 2.5),
    ]
    # Not listed: 11-02 INFY pnl off by 3 (< 0.5% of 1003); the superseded 11-03 attempt's
    # pnl 99999 (its rows are gone); BB0002's T+1 holding (Kite's pnl 0 = ours, quantity 0).


# --- snapshot_totals: written by store, with its snapshot's rows ------------------------

TOTALS_COLUMNS = ("holdings_invested", "holdings_value", "holdings_day_pnl", "mf_invested",
                  "mf_value", "positions_pnl", "positions_m2m", "cash", "cash_flow")


def totals(engine: sa.Engine) -> dict[int, tuple[Any, ...]]:
    """snapshot_totals by snapshot id: (account, snapshot_date, *TOTALS_COLUMNS)."""
    rows = query(engine, f"SELECT snapshot_id, account, snapshot_date, "
                         f"{', '.join(TOTALS_COLUMNS)} FROM snapshot_totals")
    return {row["snapshot_id"]: pick([row], "account", "snapshot_date", *TOTALS_COLUMNS)[0]
            for row in rows}


def snapshot_ids(engine: sa.Engine, status: str) -> list[int]:
    return [row["id"] for row in query(
        engine, f"SELECT id FROM snapshots WHERE status = '{status}' ORDER BY id")]


def test_store_writes_snapshot_totals(engine: sa.Engine) -> None:
    """One row per complete snapshot, with portfolio_daily's sums; none for the failed
    attempt nor for the superseded 11-03 one (its row went with its data rows)."""
    got = totals(engine)
    assert sorted(got) == snapshot_ids(engine, "ok")
    assert not set(got) & set(snapshot_ids(engine, "failed"))
    assert len(snapshot_ids(engine, "superseded")) == 1
    assert not set(got) & set(snapshot_ids(engine, "superseded"))
    assert sorted(got.values()) == [
        # holdings invested, value, day P&L; MF invested, value; positions pnl, m2m; cash,
        # cash_flow (the figures of test_portfolio_daily)
        (A, "2026-11-02", 30000, 31500, 450, 5000, 5500, 0, 0, 10000, 0),
        (A, "2026-11-03", 38100, 39300, -200, 5000, 5600, 150, 150, 21900, 20000),
        (A, "2026-11-06", 30400, 32200, 600, 5000, 5700, 0, 0, 25400, -5000),
        (A, "2026-11-09", 12320, 13520, -80, 5000, 5800, 0, 0, 40000, 0),
        (B, "2026-11-02", 0, 0, 0, 0, 0, 0, 0, 0, 0),
        (B, "2026-11-03", 0, 0, 0, 0, 0, 0, 0, 10000, 10000),
        (B, "2026-11-05", 10000, 10200, 200, 0, 0, 200, 0, 0, 0),
        (B, "2026-11-09", 7500, 7740, 60, 0, 0, 0, 0, 2560, 0),
    ]
    assert all(isinstance(v, float) for row in got.values() for v in row[2:])


def test_totals_replaced_on_restore_and_on_replace_rows(engine: sa.Engine) -> None:
    old_ids = snapshot_ids(engine, "ok")
    old = totals(engine)
    # B's 11-09 snapshot taken again after the close: 3 RELIANCE at 2590 (close 2560).
    snapshot(engine, B, D6, holdings=[holding("RELIANCE", 3, 2500, 2590, 2560)],
             funds=margins(2600))
    new_ids = snapshot_ids(engine, "ok")
    (gone,) = set(old_ids) - set(new_ids)
    (added,) = set(new_ids) - set(old_ids)
    assert gone in snapshot_ids(engine, "superseded")
    got = totals(engine)
    assert gone not in got
    assert got[added] == (B, "2026-11-09", 7500, 7770, 90, 0, 0, 0, 0, 2600, 0)
    assert {k: v for k, v in got.items() if k != added} == \
        {k: v for k, v in old.items() if k != gone}
    # run --from-raw re-derives the rows of the same snapshot: its totals follow.
    payloads = {"holdings": [holding("RELIANCE", 2, 2500, 2600, 2560)],
                "positions": {"net": [], "day": []}, "margins": margins(5200, payin=100),
                "mf_holdings": [mf(10, 50, 51.5)]}
    store.replace_rows(engine, added, normalize_all(payloads, B, D6))
    # 2 * 2500, 2 * 2600, 2 * 40; MF 10 * 50, 10 * 51.5
    assert totals(engine)[added] == (B, "2026-11-09", 5000, 5200, 80, 500, 515, 0, 0, 5200,
                                     100)
    assert query(engine, f"SELECT total_value FROM portfolio_daily "
                         f"WHERE snapshot_id = {added}") == [{"total_value": 10915}]
    assert len(totals(engine)) == len(old)


def test_totals_go_with_a_deleted_snapshot(engine: sa.Engine) -> None:
    victim = snapshot_ids(engine, "ok")[0]
    with engine.begin() as conn:
        conn.execute(sa.text("DELETE FROM snapshots WHERE id = :id"), {"id": victim})
    assert victim not in totals(engine)  # ON DELETE CASCADE


# --- both databases agree --------------------------------------------------------------

def _comparable(value: Any) -> Any:
    assert not isinstance(value, Decimal), "a NUMERIC came out; the views return doubles"
    if isinstance(value, float):
        return ("float", round(value, 9) + 0.0)
    if isinstance(value, bool):
        return ("bool", value)
    return (type(plain(value)).__name__, plain(value))


def _all_views(engine: sa.Engine, names: Iterable[str] | dict[str, list[str]] | None = None,
               ) -> dict[str, list[tuple[Any, ...]]]:
    """Every view the database has (an older revision has fewer), or those named (with
    a dict: only the columns it lists, as an older revision had them); sorted rows."""
    out = {}
    present = set(sa.inspect(engine).get_view_names())
    columns = names if isinstance(names, dict) else {}
    with engine.connect() as conn:
        for name in ((n for n in views.VIEWS if n in present) if names is None
                     else names):
            listed = ", ".join(columns.get(name, ["*"]))
            rows = conn.execute(sa.text(f"SELECT {listed} FROM {name}"))
            out[name] = sorted(tuple(_comparable(v) for v in row) for row in rows)
    return out


@pytest.fixture
def both(tmp_path: Path, postgres_server: str) -> Iterator[tuple[sa.Engine, sa.Engine]]:
    lite_url = f"sqlite:///{tmp_path / 'same.db'}"
    pg_url = create_pg_database(postgres_server)
    engines = db.make_engine(lite_url), db.make_engine(pg_url)
    try:
        migrations.upgrade(lite_url, engines[0])
        migrations.upgrade(pg_url, engines[1])
        yield engines
    finally:
        for engine in engines:
            engine.dispose()
        drop_pg_database(postgres_server, pg_url)


def test_same_results_on_sqlite_and_postgres(both: tuple[sa.Engine, sa.Engine]) -> None:
    """The hand-written scenario and 3 months of random history (the benchmark's
    generator: sales, T+1 buys, splits, deposits, withdrawals, failed and missed sessions)
    give the same rows, column types and values (to 9 decimals) on both databases."""
    from benchmarks.bench_views import generate, insert, sessions

    days = sessions(60, date(2025, 1, 6))
    for engine in both:
        load_scenario(engine)
        load_trade_positions(engine)
        for batch in generate(accounts=2, n_holdings=12, days=days, seed=11,
                              first_snapshot_id=1000):
            with engine.begin() as conn:
                insert(conn, batch)
        for account in ("BM0001", "BM0002"):
            import_random_ledger(engine, account, days)
    lite, pg = (_all_views(engine) for engine in both)
    for name in views.VIEWS:
        assert lite[name], f"{name}: no rows to compare"
        assert lite[name] == pg[name], name
    assert len(lite["realised_estimate"]) > 10
    assert sum(row[-1] == ("str", "ledger") for row in lite["portfolio_daily"]) > 100
    [moved] = query(both[0], "SELECT COUNT(*) AS n FROM portfolio_daily p JOIN "
                             "snapshot_totals t ON t.snapshot_id = p.snapshot_id "
                             "WHERE p.cash_flow <> t.cash_flow")
    assert moved["n"] > 10  # the Saturdays' deposits, on the Mondays


def import_random_ledger(engine: sa.Engine, account: str, days: list[date]) -> None:
    """A ledger for ``account`` as `import ledger` stores it, covering ``days``: its
    pay-ins and payouts on their days, and a deposit on every Saturday and on every
    session it has no complete snapshot of (flows the snapshots never show)."""
    from snapshotter.store import imports

    with engine.connect() as conn:
        flows = conn.execute(sa.text(
            "SELECT f.snapshot_date, f.intraday_payin, f.payout FROM funds f "
            "JOIN snapshots s ON s.id = f.snapshot_id AND s.status = 'ok' "
            "WHERE f.account = :a AND f.segment = 'equity'"), {"a": account}).all()
    seen = {date.fromisoformat(d) if isinstance(d, str) else d: (payin, payout)
            for d, payin, payout in flows}
    lines = []
    for day in pd.date_range(days[0], days[-1]).date:
        missed = day.weekday() == 5 or (day.weekday() < 5 and day not in seen)
        payin, payout = (1000.25 + day.day, 0.0) if missed else seen.get(day, (0.0, 0.0))
        if payin:
            lines.append((day, f"Funds added on {day}", "Bank Receipts", 0.0, payin))
        if payout:
            lines.append((day, f"Funds paid out on {day}", "Bank Payments", payout, 0.0))
    frame = pd.DataFrame(lines, columns=["posting_date", "particulars", "voucher_type",
                                         "debit", "credit"])
    frame["cost_center"] = "NSE-EQ - Z"
    frame["amount"] = frame["credit"] - frame["debit"]
    frame["net_balance"] = frame["amount"].cumsum().round(2)
    frame["kind"] = frame["voucher_type"].map({"Bank Receipts": "deposit",
                                               "Bank Payments": "withdrawal"})
    frame["occurrence"] = 1
    frame["line"] = range(2, len(frame) + 2)
    imports.store_file(engine, "ledger", account, "ledger.csv", "x", frame,
                       datetime(2025, 4, 1, tzinfo=UTC))


# --- the migration ---------------------------------------------------------------------

def test_every_view_has_its_file_in_dependency_order_and_is_documented() -> None:
    """views.py reads each view's SQL from its file under snapshotter/store/sql/, in an
    order where a view reads only views before it; the docs describe each."""
    import re

    root = Path(__file__).resolve().parent.parent
    docs = "".join(p.read_text(encoding="utf-8")
                   for p in [root / "README.md", *sorted(root.glob("docs/**/*.md"))]
                   if p.is_file())
    assert views.SNAPSHOT_TOTALS.lstrip().startswith("INSERT INTO snapshot_totals")
    assert views.LEDGER_FLOWS.lstrip().startswith("INSERT INTO ledger_flows")
    assert views.SNAPSHOT_NAV.lstrip().startswith("INSERT INTO snapshot_nav")
    names = list(views.VIEWS)
    for position, (name, sql) in enumerate(views.VIEWS.items()):
        assert sql.startswith(f"CREATE VIEW {name} AS")
        read = {other for other in names if other != name
                and re.search(rf"\b{other}\b", sql)}
        assert read <= set(names[:position]), f"{name} reads a view created after it"
        assert f"`{name}`" in docs, f"{name} is not documented"


def test_0003_backfills_snapshot_totals(database_url: str,
                                        monkeypatch: pytest.MonkeyPatch) -> None:
    """Data stored at revision 0002 (the scenario, and random history): upgrading to 0003
    fills snapshot_totals and every view gives the same rows as before; downgrading
    gives them back from the 0002 views."""
    from benchmarks.bench_views import generate, insert, sessions

    engine = db.make_engine(database_url)
    cfg = migrations.alembic_config(database_url)

    def migrate(to: str, how: Any = command.upgrade) -> None:
        with engine.begin() as conn:
            cfg.attributes["connection"] = conn
            how(cfg, to)

    try:
        migrate("0002")
        def delete_data_rows(session: Any, snapshot_ids: list[int]) -> None:
            for table in DATA_TABLES.values():
                session.execute(sa.delete(table).where(table.c.snapshot_id.in_(snapshot_ids)))

        # The ledger as today's models write it (later revisions added columns).
        with engine.begin() as conn:
            conn.execute(sa.text("ALTER TABLE snapshots ADD COLUMN rejected_credentials TEXT"))
            conn.execute(sa.text("ALTER TABLE snapshots ADD COLUMN warnings TEXT"))
        with monkeypatch.context() as m:  # store as it was at 0002: no snapshot_totals
            m.setattr(store, "_insert_totals", lambda session, snapshot_id: None)
            m.setattr(store, "_insert_nav", lambda session, account, start: None)
            m.setattr(store, "_insert_flows", lambda session, account, start: None)
            m.setattr(store, "_delete_rows", delete_data_rows)
            load_scenario(engine)
        with engine.begin() as conn:
            conn.execute(sa.text("ALTER TABLE snapshots DROP COLUMN rejected_credentials"))
            conn.execute(sa.text("ALTER TABLE snapshots DROP COLUMN warnings"))
        for batch in generate(accounts=2, n_holdings=12, days=sessions(40, date(2025, 1, 6)),
                              seed=5, first_snapshot_id=1000):
            with engine.begin() as conn:
                insert(conn, batch, totals=False)
        assert "snapshot_totals" not in sa.inspect(engine).get_table_names()
        at_0002 = {  # later views came later; later columns too
            name: [c["name"] for c in sa.inspect(engine).get_columns(name)]
            for name in ScriptDirectory(str(migrations.migrations_dir()))
            .get_revision("0002").module.VIEWS}
        before = _all_views(engine, at_0002)
        assert all(before.values())

        # 0010: the last revision that kept these views' formulas (0015 carries an
        # account's value over its gaps in portfolio_daily_all and rounds holding_daily)
        migrate("0010")
        assert sorted(totals(engine)) == snapshot_ids(engine, "ok")
        assert _all_views(engine, at_0002) == before
        migrate("head")
        snapshot(engine, B, D6, holdings=[holding("RELIANCE", 3, 2500, 2590, 2560)],
                 funds=margins(2600))  # store works on the migrated database
        assert sorted(totals(engine)) == snapshot_ids(engine, "ok")
        migrate("0010", command.downgrade)
        store_after = _all_views(engine, at_0002)

        migrate("0002", command.downgrade)
        assert "snapshot_totals" not in sa.inspect(engine).get_table_names()
        assert _all_views(engine, at_0002) == store_after
    finally:
        engine.dispose()


def test_downgrade_drops_the_views_and_their_indexes(database_url: str) -> None:
    engine = db.make_engine(database_url)
    try:
        migrations.upgrade(database_url, engine)
        assert set(views.VIEWS) <= set(sa.inspect(engine).get_view_names())
        cfg = migrations.alembic_config(database_url)
        with engine.begin() as conn:
            cfg.attributes["connection"] = conn
            command.downgrade(cfg, "0001")
        assert sa.inspect(engine).get_view_names() == []
        indexes = {ix["name"] for ix in sa.inspect(engine).get_indexes("holdings")}
        assert not indexes & {"ix_holdings_totals", "ix_holdings_symbol"}
        assert migrations.upgrade(database_url, engine) is True
        assert set(views.VIEWS) <= set(sa.inspect(engine).get_view_names())
    finally:
        engine.dispose()


def test_views_never_divide_by_zero(database_url: str) -> None:
    """Zero quantities, prices and totals everywhere: NULLs, never an error (PostgreSQL
    raises on division by zero)."""
    engine = db.make_engine(database_url)
    try:
        migrations.upgrade(database_url, engine)
        zero = holding("ZERO", 0, 0, 0, 0)
        for day in (D1, D2, D5):
            snapshot(engine, A, day, holdings=[zero], funds=margins(0))
        snapshot(engine, A, D6, holdings=[holding("ZERO", 5, 0, 0, 0)], funds=margins(0))
        for name in views.VIEWS:
            query(engine, f"SELECT * FROM {name}")
        rows = query(engine, "SELECT weight, quantity_change FROM holding_daily "
                             "ORDER BY snapshot_date")
        assert pick(rows, "weight", "quantity_change") == [
            (None, None), (None, 0), (None, 0), (None, 5)]
        returns = query(engine, "SELECT daily_return, twr_index FROM pnl_daily")
        assert {(r["daily_return"], r["twr_index"]) for r in returns} == {(None, 1.0)}
        assert query(engine, "SELECT * FROM corporate_actions") == []
    finally:
        engine.dispose()


def test_sqlite_has_ln_and_exp(tmp_path: Path) -> None:
    """pnl_daily's TWR needs LN and EXP; SQLite has them when built with its math functions."""
    engine = db.make_engine(f"sqlite:///{tmp_path / 'math.db'}")
    try:
        with engine.connect() as conn:
            value = conn.execute(sa.text("SELECT EXP(LN(2.0))")).scalar()
        assert value is not None and math.isclose(value, 2.0)
    finally:
        engine.dispose()


def _nav_steps(text: str) -> list[str]:
    """Each NAV step (the ``units`` and ``nav`` CASEs after one previous row) in a SQL
    text, with the previous row's alias written ``prev``."""
    steps = []
    for block in text.split("END AS nav")[:-1]:
        start = block.rindex("CASE\n", 0, block.index("END AS units"))
        step = block[start:] + "END AS nav"
        alias = step.split("WHEN ", 2)[2].split(".nav IS NULL", 1)[0]
        steps.append(step.replace(f"{alias}.", "prev."))
    return steps


def test_the_nav_step_is_one_formula_wherever_it_is_written() -> None:
    """The NAV step is written four times (the first and the next row, in the fill of
    snapshot_nav and in nav_daily_all): an edit to one must be made to all."""
    steps = _nav_steps(views.SNAPSHOT_NAV) + _nav_steps(views.VIEWS["nav_daily_all"])
    assert len(steps) == 4
    assert len(set(steps)) == 1, steps
