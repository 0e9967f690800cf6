"""The dashboard's database: opened read-only, never migrated, and read one consistent
snapshot per page (a writer may commit between two of a page's queries)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any
from urllib.parse import quote

import sqlalchemy as sa

from snapshotter.errors import UsageError
from snapshotter.store import engine as db


def _sqlite_read_only_url(url: str) -> str:
    path = db.sqlite_path(url)
    assert path is not None
    return f"sqlite:///file:{quote(path)}?mode=ro&uri=true"


def open_read_only(url: str) -> sa.Engine:
    """An engine that cannot write: SQLite opened with ``mode=ro`` (its own transactions
    begun explicitly, so that a page's reads share one snapshot of the WAL), PostgreSQL
    in REPEATABLE READ READ ONLY transactions. A missing SQLite file is a UsageError."""
    path = db.sqlite_path(url)
    if path is not None:
        import os

        if not os.path.isfile(path):
            raise UsageError(f"no database at {path} (run `snapshotter run` first)")
        engine = db.make_engine(db.read_only_sqlite_url(url) or _sqlite_read_only_url(url))

        # pysqlite begins no transaction before a SELECT: without one, each query of a page
        # would see whatever a writer committed in between.
        @sa.event.listens_for(engine, "connect")
        def _manual_transactions(dbapi_conn: Any, _record: Any) -> None:
            dbapi_conn.isolation_level = None

        @sa.event.listens_for(engine, "begin")
        def _begin(conn: sa.Connection) -> None:
            conn.exec_driver_sql("BEGIN")

        return engine
    return db.make_engine(url, pool_size=4, max_overflow=4).execution_options(
        isolation_level="REPEATABLE READ", postgresql_readonly=True)


@contextmanager
def snapshot(engine: sa.Engine) -> Iterator[sa.Connection]:
    """One read transaction: every query through it sees the same committed state."""
    with engine.connect() as conn:
        conn.begin()
        try:
            yield conn
        finally:
            conn.rollback()
