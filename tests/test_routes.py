"""The route table (snapshotter/routes.py) is the one place a data route is described:
the Kite client, normalize, the database schema (data tables and the ledger's counts),
the store and the summaries all read it, and the simulator answers every route."""

from __future__ import annotations

from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import pytest

from snapshotter import normalize, routes
from snapshotter.config import AccountConfig, KiteConfig, Secret
from snapshotter.kite.client import KiteClient
from snapshotter.kite.token_cache import TokenCache
from snapshotter.normalize import PayloadError, normalize_route, normalize_snapshot
from snapshotter.reports import summary
from snapshotter.routes import Route
from snapshotter.sessions import ManualClock
from snapshotter.simulator import KiteSimulator, demo_accounts
from snapshotter.store.models import COUNT_COLUMNS, DATA_TABLES, Snapshot

DAY = date(2026, 11, 27)


def test_the_client_asks_for_every_route_of_the_table(tmp_path: Path) -> None:
    account = demo_accounts(1, seed=3)[0]
    clock = ManualClock(datetime(2026, 11, 27, 10, 0, tzinfo=UTC))
    with KiteSimulator([account], clock=clock) as sim:
        kite = KiteConfig(base_url=sim.base_url, api_root=sim.base_url, backoff=0.01)
        config = AccountConfig(user_id=account.user_id, password=Secret(account.password),
                               totp_secret=Secret(account.totp_secret))
        payloads = KiteClient(config, kite, TokenCache(tmp_path), clock=clock,
                              sleep=lambda _: None).fetch_all()
        asked = [path for _, path, _ in sim.requests_log]
    assert set(payloads) == {route.name for route in routes.ROUTES}
    assert sorted(p for p in asked if p.startswith(routes.WEB_PREFIX)) == sorted(
        route.web_path for route in routes.ROUTES)


def test_every_route_has_its_table_with_the_table_columns_and_key() -> None:
    assert list(DATA_TABLES) == [r.table for r in routes.ROUTES]
    for route in routes.ROUTES:
        table = DATA_TABLES[route.table]
        assert [c.name for c in table.columns] == [
            "id", "snapshot_id", "account", "snapshot_date", *route.columns, "extra"]
        [unique] = [c for c in table.constraints if c.__class__.__name__ == "UniqueConstraint"]
        assert [c.name for c in unique.columns] == ["account", "snapshot_date",
                                                    *route.natural_key]
        frame = normalize_route(route, None, "AB1234", DAY)
        assert list(frame.columns) == ["account", "snapshot_date", *route.columns, "extra"]
    assert {r.name: r.table for r in routes.ROUTES} == normalize.TABLE_BY_PAYLOAD
    assert {r.table: r.natural_key for r in routes.ROUTES} == normalize.NATURAL_KEYS


def test_every_route_has_its_count_in_the_ledger() -> None:
    """One ``{table}_count`` column per route, after ``error``, filled by the store and
    read back by Snapshot.counts (the run's outcomes) and the session summary."""
    columns = [c.name for c in Snapshot.__table__.columns]
    assert [c for c in columns if c.endswith("_count")] == [
        r.count_column for r in routes.ROUTES]
    assert columns.index(routes.ROUTES[0].count_column) == columns.index("error") + 1
    assert {r.table: f"{r.table}_count" for r in routes.ROUTES} == COUNT_COLUMNS
    for route in routes.ROUTES:
        assert not Snapshot.__table__.c[route.count_column].nullable
    snap = Snapshot(**{r.count_column: i for i, r in enumerate(routes.ROUTES)})
    assert snap.counts() == {r.table: i for i, r in enumerate(routes.ROUTES)}
    assert list(summary.SUMMARY_COUNTS) == [r.count_column for r in routes.ROUTES
                                            if r.summary_heading]


def test_the_simulator_answers_every_route(tmp_path: Path) -> None:
    """Every route of the table has the simulator's answer: fetched by the real client
    over a web session, each normalizes into rows of its table (in some account)."""
    accounts = demo_accounts(3, seed=7)
    now = datetime(2026, 11, 27, 11, 0, 7, tzinfo=UTC)
    rows = dict.fromkeys((r.table for r in routes.ROUTES), 0)
    with KiteSimulator(accounts, clock=lambda: now) as sim:
        kite = KiteConfig(base_url=sim.base_url, api_root=sim.base_url, timeout=30,
                          retries=0, backoff=0.01)
        for acc in accounts:
            account = AccountConfig(user_id=acc.user_id, password=Secret(acc.password),
                                    totp_secret=Secret(acc.totp_secret))
            kite_client = KiteClient(account, kite, TokenCache(tmp_path), clock=lambda: now)
            payloads = kite_client.fetch_all()
            assert set(payloads) == {r.name for r in routes.ROUTES}
            normalized = normalize_snapshot(payloads, acc.user_id, DAY)
            assert normalized.warnings == ()
            for route in routes.ROUTES:
                rows[route.table] += len(normalized.frames[route.table])
    assert all(rows.values()), rows


ORDERS = Route(
    name="orders", path="/orders", table="orders", natural_key=("status", "order_id"),
    fields={"order_id": "str", "quantity": "int", "price": "float", "placed": "datetime",
            "amo": "bool"},
    nested={"meta": {"tag": "str", "day": "date"}},
    label="orders {status} #{order_id}",
    shape="grouped", group_column="status", groups=("open", "done"),
)


def test_a_new_route_is_normalized_from_its_row_alone() -> None:
    """What adding a route takes on normalize's side: its row in the table."""
    answer: dict[str, Any] = {
        "done": [{"order_id": "B", "quantity": "3", "price": 0.1 + 0.2,
                  "placed": "2026-11-27 09:15:00", "amo": False,
                  "meta": {"tag": "x", "day": "2026-11-26", "new": 1}, "venue": "NSE"}],
        "open": [{"order_id": "A", "quantity": 1}],
    }
    frame = normalize_route(ORDERS, answer, "AB1234", DAY)
    assert list(frame.columns) == ["account", "snapshot_date", "status", "order_id",
                                   "quantity", "price", "placed", "amo", "meta_tag",
                                   "meta_day", "extra"]
    assert [str(t) for t in frame.dtypes] == [
        "string", "object", "string", "string", "Int64", "Float64", "datetime64[us, UTC]",
        "boolean", "string", "object", "object"]
    rows = normalize.frame_records(frame)
    assert [(r["status"], r["order_id"], r["quantity"], r["price"]) for r in rows] == [
        ("open", "A", 1, None), ("done", "B", 3, 0.3)]
    assert rows[1]["placed"].isoformat() == "2026-11-27T03:45:00+00:00"
    assert (rows[1]["meta_day"], rows[1]["extra"]) == (date(2026, 11, 26),
                                                       {"meta": {"new": 1}, "venue": "NSE"})
    with pytest.raises(PayloadError, match=r"^orders: expected an object with open and done"):
        normalize_route(ORDERS, [], "AB1234", DAY)
    with pytest.raises(PayloadError, match=r"^field quantity: not a number: 'many'"):
        normalize_route(ORDERS, {"open": [{"order_id": "A", "quantity": "many"}]}, "AB1234",
                        DAY)


def test_a_record_is_named_by_its_route_label() -> None:
    holding = {"tradingsymbol": "INFY", "exchange": "NSE", "quantity": 1, "last_price": 1}
    with pytest.raises(PayloadError) as caught:
        normalize_snapshot({"holdings": [holding, {**holding, "quantity": 2}]}, "AB1234", DAY)
    assert str(caught.value) == "holdings NSE:INFY twice with different quantities"
    assert normalize.record_label("positions", {"position_type": "net", "exchange": "NFO",
                                                "tradingsymbol": "X" * 50}) == (
        f"positions net NFO:{'X' * 40}... ?")
