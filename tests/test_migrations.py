"""Migrations build the schema on SQLite and PostgreSQL, and match the models exactly."""

from __future__ import annotations

import sqlalchemy as sa
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext

from snapshotter.store import engine as db
from snapshotter.store import migrate
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
