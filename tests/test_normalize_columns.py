"""normalize converts whole columns (issue 9): the shape of that work, and the values at
the edges of its column operations, where one value at a time takes over."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, date, datetime
from typing import Any
from zoneinfo import ZoneInfo

import pandas as pd
import pytest
import sqlalchemy as sa

from snapshotter import routes
from snapshotter.normalize import (
    PayloadError,
    frame_records,
    normalize_route,
    normalize_snapshot,
)
from snapshotter.simulator import make_portfolio
from snapshotter.store import engine as db
from snapshotter.store import migrate
from snapshotter.store import writes as store

DAY = date(2026, 11, 27)
TAKEN = datetime(2026, 11, 27, 11, tzinfo=UTC)


def test_no_pandas_series_per_column(monkeypatch: pytest.MonkeyPatch) -> None:
    """Each table's columns are built once and stored as they are: normalizing and storing
    20 accounts builds no pandas Series at all (the job used to build one per column per
    account, then take every value back out of it)."""
    portfolios = [make_portfolio(seed) for seed in range(20)]
    built = Counter[str]()
    series_init = pd.Series.__init__

    def counted(self: pd.Series, *args: Any, **kwargs: Any) -> None:
        built["series"] += 1
        series_init(self, *args, **kwargs)

    monkeypatch.setattr(pd.Series, "__init__", counted)
    rows = 0
    for number, payloads in enumerate(portfolios):
        found = normalize_snapshot(payloads, f"AB{number:04d}", DAY)
        rows += sum(len(frame_records(frame)) for frame in found.tables.values())
    assert rows > 200
    assert built["series"] == 0


def test_one_statement_per_table_per_snapshot(database_url: str) -> None:
    """A snapshot is one transaction: the ledger row, one executemany per data table and
    one for the raw answers, the totals, the ledger's flows (INSERT ... SELECT: none
    without an imported ledger), the NAV."""
    engine = db.make_engine(database_url)
    migrate.upgrade(database_url, engine)
    payloads = make_portfolio(3)
    payloads["holdings"] += [{**h, "exchange": "BSE"} for h in payloads["holdings"]]
    found = normalize_snapshot(payloads, "AB1234", DAY)
    inserts = Counter[tuple[str, bool]]()
    commits = []

    def count(conn: Any, cursor: Any, statement: str, parameters: Any, context: Any,
              executemany: bool) -> None:
        if statement.startswith("INSERT INTO "):
            inserts[statement.split()[2].strip('"'), executemany] += 1

    sa.event.listen(engine, "before_cursor_execute", count)
    sa.event.listen(engine, "commit", lambda conn: commits.append(1))
    try:
        stored = store.store_snapshot(engine, account="AB1234", snapshot_date=DAY,
                                      taken_at=TAKEN, final=True, payloads=payloads,
                                      frames=found.tables, warnings=found.warnings)
    finally:
        engine.dispose()
    tables = [t for t, n in stored.counts.items() if n]
    assert stored.counts["holdings"] >= 2
    assert sorted(inserts.items()) == sorted([
        (("snapshots", False), 1), (("snapshot_totals", False), 1),
        (("snapshot_nav", False), 1), (("ledger_flows", False), 1),
        (("raw_payloads", True), 1),
        *(((t, stored.counts[t] > 1), 1) for t in tables)])
    assert len(commits) == 1


def test_the_first_bad_value_in_column_order_is_named() -> None:
    """Bad values are found column by column, and the first one, in the table's column
    order and then record order, is the one named (as one value at a time did)."""
    raw = [{"tradingsymbol": "A", "price": 1, "quantity": "many"},
           {"tradingsymbol": "B", "price": "free", "quantity": 2}]
    with pytest.raises(PayloadError, match=r"^field price: not a number: 'free'$"):
        normalize_route(routes.HOLDINGS, raw, "AB1234", DAY)
    raw[1]["price"] = 3
    with pytest.raises(PayloadError, match=r"^field quantity: not a number: 'many'$"):
        normalize_route(routes.HOLDINGS, raw, "AB1234", DAY)


def test_columns_mixing_plain_and_odd_values() -> None:
    raw = [{"quantity": 5, "price": 1.25, "discrepancy": False, "isin": "INE1",
            "authorised_date": "2026-11-27 09:15:00"},
           {"quantity": " 7 ", "price": "2.5", "discrepancy": "true", "isin": 42,
            "authorised_date": "2026-11-27T09:15:00+00:00"},
           {"quantity": 2.0, "price": 3, "discrepancy": 1, "isin": "  ",
            "authorised_date": "2026-11-27"}]
    rows = frame_records(normalize_route(routes.HOLDINGS, raw, "AB1234", DAY))
    assert [r["quantity"] for r in rows] == [5, 7, 2]
    assert [r["price"] for r in rows] == [1.25, 2.5, 3.0]
    assert [r["discrepancy"] for r in rows] == [False, True, True]
    assert [r["isin"] for r in rows] == ["INE1", "42", None]
    assert [r["authorised_date"] for r in rows] == [
        datetime(2026, 11, 27, 3, 45, tzinfo=UTC), datetime(2026, 11, 27, 9, 15, tzinfo=UTC),
        datetime(2026, 11, 26, 18, 30, tzinfo=UTC)]


@pytest.mark.parametrize("wall", ["1942-09-01 00:10:00", "1943-06-01 10:00:00",
                                  "1945-10-14 23:30:00", "1900-01-01 00:00:00"])
def test_wall_times_from_before_ist_was_fixed_keep_their_offset(wall: str) -> None:
    """Asia/Kolkata moved its clocks until 1945: those wall times are read with zoneinfo
    (later ones are all +05:30)."""
    moment = datetime.fromisoformat(wall).replace(tzinfo=ZoneInfo("Asia/Kolkata"))
    raw = [{"authorised_date": wall}, {"authorised_date": "2026-11-27 09:15:00"}]
    rows = frame_records(normalize_route(routes.HOLDINGS, raw, "AB1234", DAY))
    assert [r["authorised_date"] for r in rows] == [
        moment.astimezone(UTC), datetime(2026, 11, 27, 3, 45, tzinfo=UTC)]


@pytest.mark.parametrize("text", ["2026-11-27 09:15:00\n2026-11-27 09:15:00",
                                  "2026-11-27 09:15:0\n2026-11-27 09:15:00",
                                  "2026-02-30 09:15:00", "2026-11-27 24:00:00",
                                  "0001-01-01 00:00:00", "२०२६-11-27 09:15:00"])
def test_timestamps_kite_never_sends_are_refused(text: str) -> None:
    raw = [{"authorised_date": "2026-11-27 09:15:00"}, {"authorised_date": text}]
    with pytest.raises(PayloadError, match=r"^field authorised_date: (not a timestamp|"
                                           r"timestamp out of range): "):
        normalize_route(routes.HOLDINGS, raw, "AB1234", DAY)
