"""Write snapshots: one transaction per account snapshot, a ledger row for every attempt."""

from __future__ import annotations

import gzip
import json
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

import numpy as np
import pandas as pd
import sqlalchemy as sa
from sqlalchemy.orm import Session

from snapshotter import views
from snapshotter.models import (
    DATA_TABLES,
    SNAPSHOT_FAILED,
    SNAPSHOT_OK,
    SNAPSHOT_SUPERSEDED,
    RawPayload,
    Snapshot,
    SnapshotTotals,
)

MAX_ERROR_LENGTH = 2000


@dataclass(frozen=True)
class StoredSnapshot:
    id: int
    account: str
    snapshot_date: date
    final: bool
    counts: dict[str, int]


def _plain(value: Any) -> Any:
    if value is None or value is pd.NA or value is pd.NaT:
        return None
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, pd.Timestamp):
        return value.to_pydatetime()
    if isinstance(value, np.generic):
        return value.item()
    return value


def frame_records(frame: pd.DataFrame) -> list[dict[str, Any]]:
    """DataFrame -> plain Python rows (NA -> None, numpy scalars -> Python scalars)."""
    if frame.empty:
        return []
    names = list(frame.columns)
    columns = [[_plain(v) for v in frame[name].tolist()] for name in names]
    return [dict(zip(names, row, strict=True)) for row in zip(*columns, strict=True)]


def complete_snapshots(engine: sa.Engine, snapshot_date: date,
                       accounts: Iterable[str] | None = None) -> dict[str, Snapshot]:
    """The complete (status ok) snapshot of ``snapshot_date`` per account."""
    query = sa.select(Snapshot).where(Snapshot.snapshot_date == snapshot_date,
                                      Snapshot.status == SNAPSHOT_OK)
    if accounts is not None:
        query = query.where(Snapshot.account.in_(list(accounts)))
    with Session(engine, expire_on_commit=False) as session:
        return {snap.account: snap for snap in session.scalars(query)}


def _delete_rows(session: Session, snapshot_ids: list[int]) -> None:
    """A snapshot's data rows and its totals row."""
    for table in DATA_TABLES.values():
        session.execute(sa.delete(table).where(table.c.snapshot_id.in_(snapshot_ids)))
    session.execute(sa.delete(SnapshotTotals).where(SnapshotTotals.snapshot_id.in_(snapshot_ids)))


def _insert_totals(session: Session, snapshot_id: int) -> None:
    """The snapshot's ``snapshot_totals`` row, from its rows as stored (one INSERT ...
    SELECT: the views' formulas and rounding, in SQL, on both databases)."""
    session.execute(sa.text(views.SNAPSHOT_TOTALS),
                    {"first_id": snapshot_id, "last_id": snapshot_id})


def _insert_frames(session: Session, snapshot_id: int,
                   frames: Mapping[str, pd.DataFrame]) -> dict[str, int]:
    counts = {}
    for name, table in DATA_TABLES.items():
        rows = frame_records(frames.get(name, pd.DataFrame()))
        for row in rows:
            row["snapshot_id"] = snapshot_id
        if rows:
            session.execute(sa.insert(table), rows)
        counts[name] = len(rows)
    return counts


def _set_counts(snap: Snapshot, counts: Mapping[str, int]) -> None:
    snap.holdings_count = counts.get("holdings", 0)
    snap.positions_count = counts.get("positions", 0)
    snap.funds_count = counts.get("funds", 0)
    snap.mf_holdings_count = counts.get("mf_holdings", 0)


def compress(payload: Any) -> bytes:
    return gzip.compress(json.dumps(payload, separators=(",", ":")).encode(), mtime=0)


def decompress(body: bytes) -> Any:
    return json.loads(gzip.decompress(body))


def store_snapshot(
    engine: sa.Engine,
    *,
    account: str,
    snapshot_date: date,
    taken_at: datetime,
    final: bool,
    payloads: Mapping[str, Any],
    frames: Mapping[str, pd.DataFrame],
    duration_ms: int | None = None,
) -> StoredSnapshot:
    """All rows of one account snapshot (and its ``snapshot_totals`` row) in one
    transaction, replacing an earlier one (whose rows and totals are deleted)."""
    with Session(engine) as session, session.begin():
        previous = list(session.scalars(
            sa.select(Snapshot).where(Snapshot.account == account,
                                      Snapshot.snapshot_date == snapshot_date,
                                      Snapshot.status == SNAPSHOT_OK).with_for_update()))
        if previous:
            _delete_rows(session, [p.id for p in previous])
            for p in previous:
                p.status = SNAPSHOT_SUPERSEDED
            session.flush()
        snap = Snapshot(account=account, snapshot_date=snapshot_date, taken_at=taken_at,
                        status=SNAPSHOT_OK, final=final, duration_ms=duration_ms, source="kite")
        session.add(snap)
        session.flush()
        counts = _insert_frames(session, snap.id, frames)
        _insert_totals(session, snap.id)
        _set_counts(snap, counts)
        session.add_all(RawPayload(snapshot_id=snap.id, name=name, body=compress(body))
                        for name, body in payloads.items())
        return StoredSnapshot(snap.id, account, snapshot_date, final, counts)


def record_failure(engine: sa.Engine, *, account: str, snapshot_date: date,
                   taken_at: datetime, error: str, duration_ms: int | None = None,
                   rejected_credentials: str | None = None) -> None:
    with Session(engine) as session, session.begin():
        session.add(Snapshot(account=account, snapshot_date=snapshot_date, taken_at=taken_at,
                             status=SNAPSHOT_FAILED, final=False,
                             error=error[:MAX_ERROR_LENGTH], duration_ms=duration_ms,
                             source="kite", rejected_credentials=rejected_credentials))


def rejected_credentials(engine: sa.Engine, accounts: Iterable[str]) -> dict[str, Snapshot]:
    """Per account, its latest ledger row when that row is a rejection of credentials."""
    latest = sa.select(Snapshot.account, sa.func.max(Snapshot.id).label("id")).where(
        Snapshot.account.in_(list(accounts)), Snapshot.status != SNAPSHOT_SUPERSEDED,
    ).group_by(Snapshot.account).subquery()
    query = sa.select(Snapshot).join(latest, latest.c.id == Snapshot.id).where(
        Snapshot.rejected_credentials.is_not(None))
    with Session(engine, expire_on_commit=False) as session:
        return {snap.account: snap for snap in session.scalars(query)}


def raw_payloads(engine: sa.Engine, snapshot_id: int) -> dict[str, Any]:
    with Session(engine) as session:
        rows = session.execute(sa.select(RawPayload.name, RawPayload.body)
                               .where(RawPayload.snapshot_id == snapshot_id))
        return {name: decompress(body) for name, body in rows}


def snapshots_to_replay(engine: sa.Engine, accounts: Iterable[str] | None = None,
                        ) -> list[Snapshot]:
    query = sa.select(Snapshot).where(Snapshot.status == SNAPSHOT_OK) \
        .order_by(Snapshot.snapshot_date, Snapshot.account)
    if accounts is not None:
        query = query.where(Snapshot.account.in_(list(accounts)))
    with Session(engine, expire_on_commit=False) as session:
        return list(session.scalars(query))


def replace_rows(engine: sa.Engine, snapshot_id: int,
                 frames: Mapping[str, pd.DataFrame]) -> dict[str, int]:
    """Re-derive one stored snapshot's rows and totals (``run --from-raw``), in one
    transaction."""
    with Session(engine) as session, session.begin():
        snap = session.get(Snapshot, snapshot_id, with_for_update=True)
        if snap is None or snap.status != SNAPSHOT_OK:
            raise LookupError(f"snapshot {snapshot_id} is not a complete snapshot")
        _delete_rows(session, [snapshot_id])
        counts = _insert_frames(session, snapshot_id, frames)
        _insert_totals(session, snapshot_id)
        _set_counts(snap, counts)
        return counts


def clear_rejected_credentials(engine: sa.Engine, account: str) -> int:
    """Forget the ledger's record that Kite rejected ``account``'s credentials (after a
    successful `snapshotter login`), so the next run tries them again; the failed rows
    and their error text stay. Returns the number of rows changed."""
    with engine.begin() as conn:
        result = conn.execute(
            sa.update(Snapshot).where(Snapshot.account == account,
                                      Snapshot.rejected_credentials.is_not(None))
            .values(rejected_credentials=None))
        return int(result.rowcount or 0)
