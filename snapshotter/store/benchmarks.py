"""Benchmark closes (``benchmark_daily``): upserted in one transaction, read back for
the defaults of `benchmark fetch`."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from typing import Any

import pandas as pd
import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite

from snapshotter.store.models import BenchmarkDaily, Snapshot

_TABLE = BenchmarkDaily.metadata.tables[BenchmarkDaily.__tablename__]


@dataclass(frozen=True)
class StoredCloses:
    """What one upsert did: ``count`` closes given (``first`` .. ``last``), of which
    ``new`` dates were not stored before and ``changed`` replaced a different close."""

    name: str
    count: int
    new: int
    changed: int
    first: date | None
    last: date | None


def _upsert(dialect: str) -> Any:
    insert = postgresql.insert(_TABLE) if dialect == "postgresql" else sqlite.insert(_TABLE)
    return insert.on_conflict_do_update(index_elements=["name", "date"],
                                        set_={"close": insert.excluded.close})


def upsert_closes(engine: sa.Engine, name: str, closes: pd.DataFrame) -> StoredCloses:
    """Store ``closes`` (columns ``date``, ``close``; one row per date) under ``name``,
    replacing the closes already stored for those dates, in one transaction."""
    if closes.empty:
        return StoredCloses(name, 0, 0, 0, None, None)
    rows = [{"name": name, "date": day, "close": float(close)}
            for day, close in zip(closes["date"], closes["close"], strict=True)]
    first, last = min(r["date"] for r in rows), max(r["date"] for r in rows)
    with engine.begin() as conn:
        before = dict(conn.execute(
            sa.select(_TABLE.c.date, _TABLE.c.close).where(
                _TABLE.c.name == name, _TABLE.c.date.between(first, last))).all())
        conn.execute(_upsert(engine.dialect.name), rows)
    new = sum(r["date"] not in before for r in rows)
    changed = sum(r["date"] in before and before[r["date"]] != r["close"] for r in rows)
    return StoredCloses(name, len(rows), new, changed, first, last)


def latest_close_date(engine: sa.Engine, name: str) -> date | None:
    with engine.connect() as conn:
        return conn.execute(sa.select(sa.func.max(_TABLE.c.date))
                            .where(_TABLE.c.name == name)).scalar()


def first_snapshot_date(engine: sa.Engine) -> date | None:
    """The earliest session any account has a snapshot of (complete or not)."""
    with engine.connect() as conn:
        return conn.execute(sa.select(sa.func.min(Snapshot.snapshot_date))).scalar()
