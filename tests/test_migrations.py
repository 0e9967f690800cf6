"""Migrations build the schema on SQLite and PostgreSQL, and match the models exactly."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import pandas as pd
import sqlalchemy as sa
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory

from snapshotter.store import engine as db
from snapshotter.store import migrate, views
from snapshotter.store.models import Base


def test_migrations_match_models(database_url: str) -> None:
    engine = db.make_engine(database_url)
    try:
        assert migrate.upgrade(database_url, engine) is True
        assert migrate.upgrade(database_url, engine) is False
        assert migrate.current_revision(engine) == migrate.head_revision(database_url)
        with engine.connect() as conn:
            diff = compare_metadata(MigrationContext.configure(conn), Base.metadata)
        assert diff == [], f"models and migrations drifted: {diff}"
    finally:
        engine.dispose()


def test_downgrade_to_base_and_up_again(database_url: str) -> None:
    engine = db.make_engine(database_url)
    try:
        migrate.upgrade(database_url, engine)
        cfg = migrate.alembic_config(database_url)
        with engine.begin() as conn:
            cfg.attributes["connection"] = conn
            command.downgrade(cfg, "base")
        assert not {"holdings", "snapshot_totals"} & set(sa.inspect(engine).get_table_names())
        assert migrate.upgrade(database_url, engine) is True
        assert {"holdings", "positions", "funds", "mf_holdings", "snapshots",
                "raw_payloads", "snapshot_totals"} <= set(sa.inspect(engine).get_table_names())
    finally:
        engine.dispose()


def test_the_head_read_from_the_revision_files_is_alembics(database_url: str) -> None:
    assert migrate.head_from_files() == migrate.head_revision(database_url)
    engine = db.make_engine(database_url)
    try:
        assert migrate.stamped_revision(engine) is None  # a new, empty database
        migrate.upgrade(database_url, engine)
        assert migrate.stamped_revision(engine) == migrate.current_revision(engine)
    finally:
        engine.dispose()


# --- every earlier revision, with data, upgrades to what a new database has ------------

DERIVED_TABLES = ("snapshot_totals", "ledger_flows", "snapshot_nav")
FROZEN_FILLS = {"snapshot_totals": "SNAPSHOT_TOTALS", "ledger_flows": "LEDGER_FLOWS",
                "snapshot_nav": "SNAPSHOT_NAV"}


def _revisions() -> list[str]:
    scripts = ScriptDirectory(str(migrate.migrations_dir()))
    return [script.revision for script in reversed(list(scripts.walk_revisions()))]


def _fills_at(revision: str) -> dict[str, str]:
    """The fill SQL the store ran at ``revision`` (the newest frozen text up to it), in
    the order it ran them."""
    scripts = ScriptDirectory(str(migrate.migrations_dir()))
    fills: dict[str, str] = {}
    for script in reversed(list(scripts.walk_revisions(base="base", head=revision))):
        for table, name in FROZEN_FILLS.items():
            if hasattr(script.module, name):
                fills[table] = getattr(script.module, name)
    return {table: fills[table] for table in DERIVED_TABLES if table in fills}


def _ledger(days: list[date]) -> pd.DataFrame:
    """A ledger file covering ``days``: deposits on a session and on a Saturday (a day
    without a snapshot), a withdrawal."""
    saturday = next(d for d in days if d.weekday() == 4) + timedelta(days=1)
    lines = [(days[0], "Funds added", "Bank Receipts", 0.0, 50000.0),
             (saturday, "Funds added", "Bank Receipts", 0.0, 2500.5),
             (days[6], "Payout", "Bank Payments", 1200.0, 0.0),
             (days[-1], "Funds added", "Bank Receipts", 0.0, 100.25)]
    frame = pd.DataFrame(lines, columns=["posting_date", "particulars", "voucher_type",
                                         "debit", "credit"])
    frame["cost_center"] = "NSE-EQ - Z"
    frame["amount"] = frame["credit"] - frame["debit"]
    frame["net_balance"] = frame["amount"].cumsum().round(2)
    frame["kind"] = frame["voucher_type"].map({"Bank Receipts": "deposit",
                                               "Bank Payments": "withdrawal"})
    frame["occurrence"] = 1
    frame["line"] = range(2, len(frame) + 2)
    return frame


LEDGER_ACCOUNT = "BM0001"
IMPORTED_AT = datetime(2025, 3, 1, tzinfo=UTC)


def _insert_existing(conn: sa.Connection, table: str, rows: list[dict[str, Any]],
                     ) -> sa.CursorResult[Any]:
    """Rows into a table as a revision has it: only the columns it has."""
    present = {c["name"] for c in sa.inspect(conn).get_columns(table)}
    model = Base.metadata.tables[table]
    return conn.execute(sa.insert(model),
                        [{k: v for k, v in row.items() if k in present} for row in rows])


def _store_at(engine: sa.Engine, fills: dict[str, str], days: list[date]) -> None:
    """The data as the program of a revision stored it: the snapshots' rows, the ledger
    import when it had one (from 0010: ledger_flows), and the derived tables it had,
    filled with its own SQL (``fills``)."""
    from benchmarks.bench_views import generate, insert
    from snapshotter.normalize import frame_records

    with engine.begin() as conn:
        tables = set(sa.inspect(conn).get_table_names())
        for batch in generate(accounts=2, n_holdings=10, days=days, seed=3):
            insert(conn, batch, totals=False, nav=False)
        # a split (corporate_actions), and a pnl of Kite's that is off (reconciliation)
        conn.execute(sa.text(
            "UPDATE holdings SET quantity = quantity * 2, t1_quantity = t1_quantity * 2, "
            "average_price = average_price / 2 WHERE account = :a AND snapshot_date >= :d "
            "AND tradingsymbol = 'SYM001'"),
            {"a": LEDGER_ACCOUNT, "d": days[5]})
        conn.execute(sa.text("UPDATE holdings SET pnl = pnl + 5000 "
                             "WHERE id = (SELECT MIN(id) FROM holdings)"))
        if "ledger_flows" in tables:
            frame = _ledger(days)
            _insert_existing(conn, "console_files", [dict(
                id=1, account=LEDGER_ACCOUNT, kind="ledger", file_name="ledger.csv",
                sha256="x", imported_at=IMPORTED_AT, rows=len(frame), new_rows=len(frame),
                first_date=frame["posting_date"].min(),
                last_date=frame["posting_date"].max())])
            _insert_existing(conn, "ledger_entries", frame_records(
                frame, {"account": LEDGER_ACCOUNT, "file_id": 1,
                        "source_file": "ledger.csv"}))
        accounts = conn.execute(sa.text(
            "SELECT DISTINCT account FROM snapshots")).scalars().all()
        for table, sql in fills.items():
            if table not in tables:
                continue
            if table == "snapshot_totals":
                conn.execute(sa.text(sql), {"first_id": 0, "last_id": 10**9})
            else:
                for account in accounts:
                    conn.execute(sa.text(sql), {"account": account, "start": date.min})


def _after_head(engine: sa.Engine, days: list[date], *, ledger: bool) -> None:
    """What every database gets once at head: the ledger import where it had none, a
    leave, and the FIFO lots of one instrument (so every view has rows)."""
    from snapshotter.store import imports

    if ledger:
        imports.store_file(engine, "ledger", LEDGER_ACCOUNT, "ledger.csv", "x",
                           _ledger(days), IMPORTED_AT)
    with engine.begin() as conn:
        conn.execute(sa.text("INSERT INTO household_leaves (account, left_on) "
                             "VALUES ('BM0002', :day)"), {"day": days[8]})
        account, symbol, isin = conn.execute(sa.text(
            "SELECT account, tradingsymbol, COALESCE(isin, tradingsymbol) FROM holdings "
            "ORDER BY id LIMIT 1")).one()
        conn.execute(sa.text(
            "INSERT INTO trade_positions (account, instrument, from_date, to_date, "
            "tradingsymbol, isin, quantity) VALUES (:a, :i, :f, NULL, :s, :i, 1)"),
            {"a": account, "i": isin, "f": days[2], "s": symbol})


def _state(engine: sa.Engine) -> dict[str, Any]:
    """Every view's definition and rows, and every derived table's rows."""
    from tests.test_views import _all_views, _comparable

    inspector = sa.inspect(engine)
    state: dict[str, Any] = {
        f"definition of {name}": inspector.get_view_definition(name)
        for name in sorted(inspector.get_view_names())}
    state.update(_all_views(engine))
    with engine.connect() as conn:
        for table in (*DERIVED_TABLES, "sql_fingerprints"):
            rows = conn.execute(sa.text(f"SELECT * FROM {table}"))
            state[table] = sorted(tuple(_comparable(v) for v in row) for row in rows)
    return state


def test_every_revision_with_data_upgrades_to_what_a_new_database_has(
        database_url: str) -> None:
    """A database made at each earlier revision, holding snapshots (holdings on NSE and
    BSE, positions, funds, MF, failed and missed sessions) and a ledger, upgrades to the
    same view definitions and the same rows of every view and derived table as a new
    database at head holding the same data."""
    from benchmarks.bench_views import sessions
    from tests.conftest import PG_ADMIN_URL, create_pg_database, drop_pg_database

    days = sessions(12, date(2025, 1, 6))
    engine = db.make_engine(database_url)
    try:
        migrate.upgrade(database_url, engine)
        _store_at(engine, views.FILLS, days)
        _after_head(engine, days, ledger=False)
        fresh = _state(engine)
    finally:
        engine.dispose()
    assert [name for name in views.VIEWS if not fresh[name]] == [], "views without rows"
    assert any(row[-1] == ("str", "ledger") for row in fresh["portfolio_daily"])
    assert fresh["ledger_flows"] and fresh["snapshot_nav"]

    for revision in _revisions()[:-1]:
        if database_url.startswith("sqlite"):
            url = database_url.replace(".db", f"-{revision}.db")
        else:
            url = create_pg_database(PG_ADMIN_URL)
        engine = db.make_engine(url)
        try:
            cfg = migrate.alembic_config(url)
            with engine.begin() as conn:
                cfg.attributes["connection"] = conn
                command.upgrade(cfg, revision)
            _store_at(engine, _fills_at(revision), days)
            had_ledger = "ledger_flows" in sa.inspect(engine).get_table_names()
            assert migrate.upgrade(url, engine) is True
            _after_head(engine, days, ledger=not had_ledger)
            upgraded = _state(engine)
        finally:
            engine.dispose()
            if not url.startswith("sqlite"):
                drop_pg_database(PG_ADMIN_URL, url)
        for name, rows in fresh.items():
            assert upgraded[name] == rows, f"from {revision}: {name}"
        assert upgraded.keys() == fresh.keys(), revision


def test_changed_sql_is_applied_at_head_without_a_migration(database_url: str) -> None:
    """A database at head whose views or derived tables were built with other SQL (as
    after a formula edit in snapshotter/store/sql/): `upgrade` recreates the views and
    rebuilds that table, once."""
    from benchmarks.bench_views import generate, insert, sessions

    engine = db.make_engine(database_url)
    try:
        migrate.upgrade(database_url, engine)
        with engine.begin() as conn:
            for batch in generate(accounts=1, n_holdings=3,
                                  days=sessions(5, date(2025, 1, 6)), seed=1):
                insert(conn, batch)
        with engine.connect() as conn:
            totals = conn.execute(sa.text("SELECT * FROM snapshot_totals")).all()
        assert totals
        with engine.begin() as conn:
            conn.execute(sa.text("UPDATE snapshot_totals SET cash = cash + 1"))
            conn.execute(sa.text("UPDATE sql_fingerprints SET sha256 = 'older' "
                                 "WHERE name IN ('views', 'snapshot_totals')"))
            conn.execute(sa.text("DROP VIEW nav_daily_all"))
        assert migrate.upgrade(database_url, engine) is True
        assert migrate.upgrade(database_url, engine) is False
        assert set(views.VIEWS) <= set(sa.inspect(engine).get_view_names())
        with engine.connect() as conn:
            assert conn.execute(sa.text("SELECT * FROM snapshot_totals")).all() == totals
            assert views.up_to_date(conn)
    finally:
        engine.dispose()


def test_migrations_from_0017_on_change_tables_only() -> None:
    """From 0017 the views and fill SQL live in snapshotter/store/sql/: no migration
    from there on holds a view or a fill of its own."""
    scripts = ScriptDirectory(str(migrate.migrations_dir()))
    newer = [script for script in scripts.walk_revisions(base="0017", head="heads")]
    assert newer, "no revision 0017"
    for script in newer:
        assert script.path is not None
        text = Path(script.path).read_text(encoding="utf-8").upper()
        assert "CREATE VIEW" not in text and "INSERT INTO" not in text, script.revision
