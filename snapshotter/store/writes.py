"""Write snapshots: one transaction per account snapshot, a ledger row for every attempt."""

from __future__ import annotations

import gzip
import json
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import date, datetime
from typing import TYPE_CHECKING, Any, cast

import sqlalchemy as sa
from sqlalchemy.orm import Session

from snapshotter.errors import SnapshotterError
from snapshotter.routes import BY_TABLE
from snapshotter.store import views
from snapshotter.store.engine import is_connection_error
from snapshotter.store.models import (
    COUNT_COLUMNS,
    DATA_TABLES,
    SNAPSHOT_FAILED,
    SNAPSHOT_OK,
    SNAPSHOT_SUPERSEDED,
    WARNING_CONFIRM_AFTER,
    LedgerEntry,
    LedgerFlow,
    RawPayload,
    Snapshot,
    SnapshotNav,
    SnapshotTotals,
)

if TYPE_CHECKING:
    from snapshotter.rows import TableRows

MAX_ERROR_LENGTH = 2000
# Tables whose emptying, or losing more than half their rows, against the account's
# previous complete snapshot is a warning.
SHRINK_CHECKED = ("holdings", "mf_holdings")
MAX_GONE_NAMED = 5
# The ledger and raw payloads as Core tables: a snapshot's rows are written without the
# ORM's unit of work.
_LEDGER = Snapshot.metadata.tables[Snapshot.__tablename__]
_RAW_PAYLOADS = RawPayload.metadata.tables[RawPayload.__tablename__]


class StoreError(SnapshotterError):
    """The database refused an account snapshot's rows: one line naming the account and
    the table (never the driver's text)."""


def error_kind(exc: BaseException) -> str:
    """A database error named without its text (which can quote the data it refused):
    the driver's exception class, and PostgreSQL's SQLSTATE."""
    orig = getattr(exc, "orig", None)
    kind = type(orig or exc).__name__
    sqlstate = getattr(orig, "sqlstate", None)
    return f"{kind}, SQLSTATE {sqlstate}" if sqlstate else kind


@contextmanager
def _refused_as_store_error(account: str, table: str) -> Iterator[None]:
    """normalize makes every row storable on both databases: a database refusing one
    anyway is a case nobody foresaw, reported as one line naming account and table."""
    try:
        yield
    except sa.exc.DBAPIError as exc:
        if is_connection_error(exc):
            raise
        raise StoreError(f"account {account}: could not store {table}: the database "
                         f"refused a row ({error_kind(exc)})") from exc


@dataclass(frozen=True)
class StoredSnapshot:
    id: int
    account: str
    snapshot_date: date
    final: bool
    counts: dict[str, int]
    warnings: tuple[str, ...] = ()


def complete_snapshots(engine: sa.Engine, snapshot_date: date,
                       accounts: Iterable[str] | None = None) -> dict[str, Snapshot]:
    """The complete (status ok) snapshot of ``snapshot_date`` per account."""
    query = sa.select(Snapshot).where(Snapshot.snapshot_date == snapshot_date,
                                      Snapshot.status == SNAPSHOT_OK)
    if accounts is not None:
        query = query.where(Snapshot.account.in_(list(accounts)))
    with Session(engine, expire_on_commit=False) as session:
        return {snap.account: snap for snap in session.scalars(query)}


def _delete_rows(session: Session, snapshot_ids: list[int], *, nav: bool = True) -> None:
    """A snapshot's data rows, its totals row and (``nav``) its NAV and ledger flow rows."""
    for table in DATA_TABLES.values():
        session.execute(sa.delete(table).where(table.c.snapshot_id.in_(snapshot_ids)))
    session.execute(sa.delete(SnapshotTotals).where(SnapshotTotals.snapshot_id.in_(snapshot_ids)))
    if nav:
        session.execute(sa.delete(SnapshotNav).where(SnapshotNav.snapshot_id.in_(snapshot_ids)))
        session.execute(sa.delete(LedgerFlow).where(LedgerFlow.snapshot_id.in_(snapshot_ids)))


def _insert_totals(session: Session, snapshot_id: int) -> None:
    """The snapshot's ``snapshot_totals`` row, from its rows as stored (one INSERT ...
    SELECT: the views' formulas and rounding, in SQL, on both databases)."""
    session.execute(sa.text(views.SNAPSHOT_TOTALS),
                    {"first_id": snapshot_id, "last_id": snapshot_id})


def _insert_flows(session: Session | sa.Connection, account: str, start: date) -> None:
    """The account's ``ledger_flows`` rows from ``start`` onwards (the snapshots there
    that its imported ledger covers): one DELETE and one INSERT ... SELECT. Storing the
    snapshot of ``start`` changes its own flow and the next snapshot's (whose previous
    snapshot it becomes); the later ones come out as they were."""
    session.execute(sa.delete(LedgerFlow).where(LedgerFlow.account == account,
                                                LedgerFlow.snapshot_date >= start))
    session.execute(sa.text(views.LEDGER_FLOWS), {"account": account, "start": start})


def refresh_ledger_flows(conn: sa.Connection, account: str) -> date | None:
    """After a ledger import (in its transaction): the account's ``ledger_flows`` rows
    recomputed, and its ``snapshot_nav`` rows from the first snapshot whose cash flow
    changed (none when the import changed no flow, as a re-import). Returns that
    snapshot's date."""
    query = sa.select(LedgerFlow.snapshot_id, LedgerFlow.snapshot_date,
                      LedgerFlow.cash_flow).where(LedgerFlow.account == account)
    before = {row[0]: (row[1], row[2]) for row in conn.execute(query)}
    _insert_flows(conn, account, date.min)
    after = {row[0]: (row[1], row[2]) for row in conn.execute(query)}
    changed = [(after.get(key) or before[key])[0] for key in before.keys() | after.keys()
               if before.get(key) != after.get(key)]
    if not changed:
        return None
    start = min(changed)
    _insert_nav(conn, account, start)
    return start


def _insert_nav(session: Session | sa.Connection, account: str, start: date) -> None:
    """The account's ``snapshot_nav`` rows from ``start`` onwards, recomputed from its
    last row before ``start`` (a NAV depends on the previous one; for the newest session
    that is one row): one DELETE and one INSERT ... SELECT (the recursion, in SQL)."""
    session.execute(sa.delete(SnapshotNav).where(SnapshotNav.account == account,
                                                 SnapshotNav.snapshot_date >= start))
    session.execute(sa.text(views.SNAPSHOT_NAV), {"account": account, "start": start})


def _value_and_flow(session: Session, account: str, snapshot_date: date,
                    ) -> tuple[float, float] | None:
    """What the NAVs from a snapshot on depend on, of the snapshot itself: its
    total_value (as portfolio_daily shows it) and its own cash flow (intraday_payin -
    payout: its ``cash_flow`` where no ledger covers it; part of its ledger flow and of
    the next snapshot's where one does)."""
    row = session.execute(sa.text(
        "SELECT p.total_value, t.cash_flow FROM portfolio_daily p "
        "JOIN snapshot_totals t ON t.snapshot_id = p.snapshot_id "
        "WHERE p.account = :account AND p.snapshot_date = :day"),
        {"account": account, "day": snapshot_date}).first()
    return None if row is None else (row[0], row[1])


def _insert_frames(session: Session, account: str, snapshot_id: int,
                   frames: Mapping[str, TableRows]) -> dict[str, int]:
    """One executemany per table, its rows taken from the frame column by column."""
    from snapshotter.rows import frame_records

    counts = {}
    for name, table in DATA_TABLES.items():
        frame = frames.get(name)
        rows = [] if frame is None else frame_records(frame, {"snapshot_id": snapshot_id})
        if rows:
            with _refused_as_store_error(account, name):
                session.execute(sa.insert(table), rows)
        counts[name] = len(rows)
    return counts


def _set_counts(snap: Snapshot, counts: Mapping[str, int]) -> None:
    for table, column in COUNT_COLUMNS.items():
        setattr(snap, column, counts.get(table, 0))


def compress(payload: Any) -> bytes:
    # Level 6: as small as 9 for Kite's answers, in two thirds of the time.
    return gzip.compress(json.dumps(payload, separators=(",", ":")).encode(), mtime=0,
                         compresslevel=6)


def decompress(body: bytes) -> Any:
    return json.loads(gzip.decompress(body))


_PREVIOUS_COLUMNS = (_LEDGER.c.id, _LEDGER.c.account, _LEDGER.c.snapshot_date,
                     *(_LEDGER.c[COUNT_COLUMNS[name]] for name in SHRINK_CHECKED))


def _previous(session: Session, account: str, snapshot_date: date) -> sa.Row[Any] | None:
    """The account's previous complete snapshot of an earlier session (its counts)."""
    return session.execute(
        sa.select(*_PREVIOUS_COLUMNS)
        .where(_LEDGER.c.account == account, _LEDGER.c.snapshot_date < snapshot_date,
               _LEDGER.c.status == SNAPSHOT_OK)
        .order_by(_LEDGER.c.snapshot_date.desc()).limit(1)).first()


def _previous_of_each(session: Session, accounts: Sequence[str], snapshot_date: date,
                      ) -> dict[str, sa.Row[Any]]:
    """``_previous`` of several accounts, in one query."""
    latest = sa.select(_LEDGER.c.account, sa.func.max(_LEDGER.c.snapshot_date).label("day")) \
        .where(_LEDGER.c.account.in_(accounts), _LEDGER.c.snapshot_date < snapshot_date,
               _LEDGER.c.status == SNAPSHOT_OK).group_by(_LEDGER.c.account).subquery()
    query = sa.select(*_PREVIOUS_COLUMNS).join(latest, sa.and_(
        _LEDGER.c.account == latest.c.account, _LEDGER.c.snapshot_date == latest.c.day)) \
        .where(_LEDGER.c.status == SNAPSHOT_OK)
    return {row.account: row for row in session.execute(query)}


_NOT_READ: Any = object()


def _shrink_warnings(session: Session, account: str, snapshot_date: date,
                     frames: Mapping[str, TableRows],
                     previous: sa.Row[Any] | None = _NOT_READ) -> list[str]:
    """Holdings or MF holdings that emptied, or lost more than half their rows, against
    the account's previous complete snapshot of an earlier session (``previous``, read
    here when not given)."""
    from snapshotter.normalize import record_label
    from snapshotter.rows import frame_records

    if previous is _NOT_READ:
        previous = _previous(session, account, snapshot_date)
    if previous is None:
        return []
    warnings = []
    for name in SHRINK_CHECKED:
        table = DATA_TABLES[name]
        before = getattr(previous, COUNT_COLUMNS[name])
        frame = frames.get(name)
        count = 0 if frame is None else len(frame)
        if not before or count * 2 >= before:
            continue
        key = BY_TABLE[name].natural_key
        now = [] if frame is None else frame_records(frame)
        still = {tuple(row[c] for c in key) for row in now}
        old = session.execute(sa.select(*(table.c[c] for c in key))
                              .where(table.c.snapshot_id == previous.id)
                              .order_by(table.c.id)).all()
        gone = [record_label(name, dict(zip(key, row, strict=True))).split(" ", 1)[1]
                for row in old if tuple(row) not in still]
        named = ", ".join(gone[:MAX_GONE_NAMED])
        if len(gone) > MAX_GONE_NAMED:
            named += f" and {len(gone) - MAX_GONE_NAMED} more"
        warnings.append(f"account {account}: {name} went from {before} rows on "
                        f"{previous.snapshot_date} to {count} (gone: {named})")
    return warnings


def _confirmed(session: Session, account: str, snapshot_date: date, taken_at: datetime,
               warnings: str, snapshot_id: int | None) -> bool:
    """Final despite warnings: a fetch at least WARNING_CONFIRM_AFTER before this one
    (``snapshot_id``, None while it is not written yet), of the same account and
    session, saw the very same warnings (so a user who sold everything is not nagged
    forever)."""
    query = sa.select(sa.func.min(Snapshot.taken_at)).where(
        Snapshot.account == account, Snapshot.snapshot_date == snapshot_date,
        Snapshot.status.in_([SNAPSHOT_OK, SNAPSHOT_SUPERSEDED]), Snapshot.warnings == warnings)
    if snapshot_id is not None:
        query = query.where(Snapshot.id != snapshot_id)
    first_seen = session.scalar(query)
    if first_seen is None:
        return False
    return taken_at - first_seen >= WARNING_CONFIRM_AFTER


def _verdict(session: Session, account: str, snapshot_date: date, taken_at: datetime,
             frames: Mapping[str, TableRows], warnings: Sequence[str], after_close: bool,
             snapshot_id: int | None = None,
             previous: sa.Row[Any] | None = _NOT_READ) -> tuple[list[str], bool]:
    """A complete snapshot's warnings (normalize's and the shrink check's), and whether
    it is final."""
    found = sorted({*warnings, *_shrink_warnings(session, account, snapshot_date, frames,
                                                 previous)})
    final = after_close and (not found or _confirmed(
        session, account, snapshot_date, taken_at, "\n".join(found), snapshot_id))
    return found, final


def _supersede(session: Session, snapshot_ids: list[int]) -> None:
    if snapshot_ids:
        _delete_rows(session, snapshot_ids)
        session.execute(sa.update(_LEDGER).where(_LEDGER.c.id.in_(snapshot_ids))
                        .values(status=SNAPSHOT_SUPERSEDED))


def _fill(session: Session, snap: Snapshot, frames: Mapping[str, TableRows],
          warnings: Sequence[str], after_close: bool) -> StoredSnapshot:
    """An existing ledger row's rows, warnings, final flag, totals and counts."""
    found, snap.final = _verdict(session, snap.account, snap.snapshot_date, snap.taken_at,
                                 frames, warnings, after_close, snap.id)
    snap.warnings = "\n".join(found) or None
    counts = _insert_frames(session, snap.account, snap.id, frames)
    with _refused_as_store_error(snap.account, "snapshot_totals"):
        _insert_totals(session, snap.id)
    _set_counts(snap, counts)
    return StoredSnapshot(snap.id, snap.account, snap.snapshot_date, snap.final, counts,
                          tuple(found))


# pg_advisory_xact_lock's two-int key space for one account's session (the run lock uses
# the one-bigint space).
_SESSION_LOCK_SPACE = 0x4B534E50  # "KSNP"


def _one_writer_per_session(session: Session, account: str, snapshot_date: date) -> None:
    """Two snapshots of one account and session stored at once (two runs, once a run
    lock was lost) queue here, at the start of the transaction: the later one waits for
    the earlier to commit, then finds and replaces it, instead of both inserting the
    session's complete snapshot (a unique violation)."""
    if session.get_bind().dialect.name == "postgresql":
        session.execute(sa.text("SELECT pg_advisory_xact_lock(:space, hashtext(:key))"),
                        {"space": _SESSION_LOCK_SPACE, "key": f"{account}/{snapshot_date}"})
    else:
        # SQLite's write lock, taken now by a write that changes nothing: a transaction
        # whose first write came after its reads would find another writer's commit
        # only when inserting.
        session.execute(sa.update(_LEDGER).where(sa.false())
                        .values(status=_LEDGER.c.status))


def _complete_query(account: str, snapshot_date: date) -> sa.Select[Snapshot]:
    return sa.select(Snapshot).where(Snapshot.account == account,
                                     Snapshot.snapshot_date == snapshot_date,
                                     Snapshot.status == SNAPSHOT_OK).with_for_update()


def store_snapshot(
    engine: sa.Engine,
    *,
    account: str,
    snapshot_date: date,
    taken_at: datetime,
    final: bool,
    payloads: Mapping[str, Any],
    frames: Mapping[str, TableRows],
    duration_ms: int | None = None,
    warnings: Sequence[str] = (),
) -> StoredSnapshot:
    """All rows of one account snapshot (and its ``snapshot_totals`` row, and the
    account's ``ledger_flows`` and ``snapshot_nav`` rows from that session on) in one
    transaction, replacing an earlier one (whose rows and totals are deleted).

    ``final``: taken after the session settled. A snapshot with warnings (``warnings``
    from normalize, and the shrink check against the previous session) is final only
    when the same warnings were already seen WARNING_CONFIRM_AFTER earlier."""
    with Session(engine) as session, session.begin():
        _one_writer_per_session(session, account, snapshot_date)
        current = session.execute(_complete_query(account, snapshot_date)
                                  .with_only_columns(Snapshot.id)).scalars().all()
        _supersede(session, list(current))
        found, final = _verdict(session, account, snapshot_date, taken_at, frames, warnings,
                                final)
        counts = {name: 0 if frames.get(name) is None else len(frames[name])
                  for name in DATA_TABLES}
        with _refused_as_store_error(account, "snapshots"):
            inserted = session.execute(sa.insert(_LEDGER), {
                "account": account, "snapshot_date": snapshot_date, "taken_at": taken_at,
                "status": SNAPSHOT_OK, "final": final, "duration_ms": duration_ms,
                "source": "kite", "warnings": "\n".join(found) or None,
                **{COUNT_COLUMNS[name]: count for name, count in counts.items()}})
        key = cast(sa.CursorResult[Any], inserted).inserted_primary_key
        assert key is not None
        snapshot_id = int(key[0])
        _insert_frames(session, account, snapshot_id, frames)
        with _refused_as_store_error(account, "snapshot_totals"):
            _insert_totals(session, snapshot_id)
        with _refused_as_store_error(account, "ledger_flows"):
            _insert_flows(session, account, snapshot_date)
        with _refused_as_store_error(account, "snapshot_nav"):
            _insert_nav(session, account, snapshot_date)
        if payloads:
            with _refused_as_store_error(account, "raw_payloads"):
                session.execute(sa.insert(_RAW_PAYLOADS), [
                    {"snapshot_id": snapshot_id, "name": name, "body": compress(body)}
                    for name, body in payloads.items()])
        return StoredSnapshot(snapshot_id, account, snapshot_date, final, counts,
                              tuple(found))


@dataclass(frozen=True)
class NewSnapshot:
    """One account snapshot to store (``store_snapshot``'s arguments)."""

    account: str
    snapshot_date: date
    taken_at: datetime
    final: bool
    payloads: Mapping[str, Any]
    frames: Mapping[str, TableRows]
    duration_ms: int | None = None
    warnings: Sequence[str] = ()


def _writers_per_sessions(session: Session, items: Sequence[NewSnapshot]) -> None:
    """``_one_writer_per_session`` for several snapshots, in one statement (the keys in
    one order, so two batches sharing accounts queue instead of deadlocking)."""
    if session.get_bind().dialect.name != "postgresql":
        _one_writer_per_session(session, items[0].account, items[0].snapshot_date)
        return
    keys = sorted({f"{item.account}/{item.snapshot_date}" for item in items})
    session.execute(sa.text(
        "SELECT count(pg_advisory_xact_lock(:space, hashtext(k.key))) "
        "FROM unnest(CAST(:keys AS text[])) WITH ORDINALITY AS k(key, n)"),
        {"space": _SESSION_LOCK_SPACE, "keys": keys})


def _id_runs(ids: Sequence[int]) -> Iterator[tuple[int, int]]:
    """Sorted ids as (first, last) runs of consecutive ids."""
    ordered = sorted(ids)
    first = previous = ordered[0]
    for snapshot_id in ordered[1:]:
        if snapshot_id != previous + 1:
            yield first, previous
            first = snapshot_id
        previous = snapshot_id
    yield first, previous


def _with_ledger(session: Session, accounts: Sequence[str]) -> set[str]:
    """Those of ``accounts`` with an imported ledger or ledger flow rows (the others'
    ``ledger_flows`` fill writes nothing)."""
    entries, flows = (model.metadata.tables[model.__tablename__]
                      for model in (LedgerEntry, LedgerFlow))
    query = sa.union(
        sa.select(entries.c.account).where(entries.c.account.in_(accounts)).distinct(),
        sa.select(flows.c.account).where(flows.c.account.in_(accounts)).distinct())
    return set(session.execute(query).scalars())


def _table_rows(items: Sequence[NewSnapshot], ids: Sequence[int],
                name: str) -> list[dict[str, Any]]:
    """Every item's rows of one table, each with its snapshot's id. The parts of one
    table that ``normalize_snapshots`` made for them all are taken out in one go."""
    from snapshotter.rows import TablePart, frame_records, records

    frames = [(item.frames.get(name), snapshot_id)
              for item, snapshot_id in zip(items, ids, strict=True)]
    parts = [(frame, snapshot_id) for frame, snapshot_id in frames if frame is not None]
    first = parts[0][0] if parts else None
    spans = [(frame, snapshot_id) for frame, snapshot_id in parts
             if isinstance(frame, TablePart) and isinstance(first, TablePart)
             and frame.whole is first.whole]
    if parts and len(spans) == len(parts):
        import numpy as np

        whole = spans[0][0].whole
        index = np.concatenate([np.arange(part.start, part.stop) for part, _ in spans])
        owners = np.repeat([snapshot_id for _, snapshot_id in spans],
                           [len(part) for part, _ in spans])
        arrays = whole.arrays
        if len(index) != len(whole) or (index != np.arange(len(whole))).any():
            arrays = tuple(array.take(index) for array in arrays)
        return records(whole.names, arrays, plain={"snapshot_id": owners.tolist()})
    return [row for frame, snapshot_id in parts
            for row in frame_records(frame, {"snapshot_id": snapshot_id})]


def store_snapshots(engine: sa.Engine, items: Sequence[NewSnapshot]) -> list[StoredSnapshot]:
    """Several accounts' snapshots of one session, each as ``store_snapshot`` stores it,
    in ONE transaction: the commit and the statements are paid per batch (one INSERT of
    each table for all of them). All or nothing: when the database refuses any row the
    whole batch is rolled back and this raises (the caller then stores each on its own,
    so that a bad account fails alone)."""
    if not items:
        return []
    snapshot_date = items[0].snapshot_date
    accounts = [item.account for item in items]
    if any(item.snapshot_date != snapshot_date for item in items) \
            or len(set(accounts)) != len(accounts):
        raise ValueError("a batch holds one snapshot per account, all of one session")
    batch = f"{len(items)} accounts ({', '.join(accounts[:3])}{', ...' if len(items) > 3 else ''})"
    with Session(engine) as session, session.begin():
        _writers_per_sessions(session, items)
        current = session.execute(
            sa.select(_LEDGER.c.id).where(_LEDGER.c.account.in_(accounts),
                                          _LEDGER.c.snapshot_date == snapshot_date,
                                          _LEDGER.c.status == SNAPSHOT_OK)
            .with_for_update()).scalars().all()
        _supersede(session, list(current))
        previous = _previous_of_each(session, accounts, snapshot_date)
        verdicts = [_verdict(session, item.account, snapshot_date, item.taken_at,
                             item.frames, item.warnings, item.final,
                             previous=previous.get(item.account)) for item in items]
        counts = [{name: 0 if item.frames.get(name) is None else len(item.frames[name])
                   for name in DATA_TABLES} for item in items]
        with _refused_as_store_error(batch, "snapshots"):
            inserted = session.execute(
                sa.insert(_LEDGER).returning(_LEDGER.c.id, sort_by_parameter_order=True), [{
                    "account": item.account, "snapshot_date": snapshot_date,
                    "taken_at": item.taken_at, "status": SNAPSHOT_OK, "final": final,
                    "duration_ms": item.duration_ms, "source": "kite",
                    "warnings": "\n".join(found) or None, "error": None,
                    "rejected_credentials": None,
                    **{COUNT_COLUMNS[name]: n for name, n in count.items()}}
                    for item, (found, final), count in zip(items, verdicts, counts,
                                                           strict=True)])
            ids = [int(row[0]) for row in inserted]
        for name, table in DATA_TABLES.items():
            rows = _table_rows(items, ids, name)
            if rows:
                with _refused_as_store_error(batch, name):
                    session.execute(sa.insert(table), rows)
        with _refused_as_store_error(batch, "snapshot_totals"):
            for first, last in _id_runs(ids):
                session.execute(sa.text(views.SNAPSHOT_TOTALS),
                                {"first_id": first, "last_id": last})
        for account in sorted(_with_ledger(session, accounts)):
            with _refused_as_store_error(account, "ledger_flows"):
                _insert_flows(session, account, snapshot_date)
        navs = SnapshotNav.metadata.tables[SnapshotNav.__tablename__]
        later = set(session.execute(sa.select(navs.c.account).distinct().where(
            navs.c.account.in_(accounts), navs.c.snapshot_date >= snapshot_date)).scalars())
        for account in accounts:
            with _refused_as_store_error(account, "snapshot_nav"):
                # _insert_nav, without its DELETE where there is nothing to delete
                if account in later:
                    _insert_nav(session, account, snapshot_date)
                else:
                    session.execute(sa.text(views.SNAPSHOT_NAV),
                                    {"account": account, "start": snapshot_date})
        raw = [{"snapshot_id": snapshot_id, "name": name, "body": compress(body)}
               for item, snapshot_id in zip(items, ids, strict=True)
               for name, body in (item.payloads or {}).items()]
        if raw:
            with _refused_as_store_error(batch, "raw_payloads"):
                session.execute(sa.insert(_RAW_PAYLOADS), raw)
        return [StoredSnapshot(snapshot_id, item.account, snapshot_date, final, count,
                               tuple(found))
                for item, snapshot_id, (found, final), count
                in zip(items, ids, verdicts, counts, strict=True)]


def record_failure(engine: sa.Engine, *, account: str, snapshot_date: date,
                   taken_at: datetime, error: str, duration_ms: int | None = None,
                   rejected_credentials: str | None = None,
                   payloads: Mapping[str, Any] | None = None) -> None:
    """A failed attempt's ledger row, with the raw answers it got (``payloads``), so that
    ``run --from-raw`` can re-derive it once normalization handles them."""
    from snapshotter.normalize import clean_text

    with Session(engine) as session, session.begin():
        snap = Snapshot(account=account, snapshot_date=snapshot_date, taken_at=taken_at,
                        status=SNAPSHOT_FAILED, final=False,
                        error=clean_text(error)[:MAX_ERROR_LENGTH], duration_ms=duration_ms,
                        source="kite", rejected_credentials=rejected_credentials)
        session.add(snap)
        if payloads:
            session.flush()
            session.add_all(RawPayload(snapshot_id=snap.id, name=name, body=compress(body))
                            for name, body in payloads.items())


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


def failed_attempts_to_replay(engine: sa.Engine, routes: Iterable[str],
                              accounts: Iterable[str] | None = None) -> list[Snapshot]:
    """Failed attempts that kept an answer from every one of ``routes`` (a partial
    answer would re-derive into a snapshot missing parts), oldest first."""
    names = list(routes)
    complete = sa.select(RawPayload.snapshot_id).where(RawPayload.name.in_(names)) \
        .group_by(RawPayload.snapshot_id) \
        .having(sa.func.count(sa.distinct(RawPayload.name)) == len(names))
    query = sa.select(Snapshot).where(Snapshot.status == SNAPSHOT_FAILED,
                                      Snapshot.id.in_(complete)) \
        .order_by(Snapshot.snapshot_date, Snapshot.taken_at, Snapshot.id)
    if accounts is not None:
        query = query.where(Snapshot.account.in_(list(accounts)))
    with Session(engine, expire_on_commit=False) as session:
        return list(session.scalars(query))


def replace_rows(engine: sa.Engine, snapshot_id: int,
                 frames: Mapping[str, TableRows],
                 warnings: Sequence[str] = ()) -> dict[str, int]:
    """Re-derive one stored snapshot's rows, totals and warnings (``run --from-raw``),
    in one transaction; whether it is final stays as it was. The account's ledger flow
    and NAV rows from that session on are recomputed only when its total value or own
    cash flow changed (so that replaying a history whose figures stand costs no
    recursion)."""
    with Session(engine) as session, session.begin():
        snap = session.get(Snapshot, snapshot_id, with_for_update=True)
        if snap is None or snap.status != SNAPSHOT_OK:
            raise LookupError(f"snapshot {snapshot_id} is not a complete snapshot")
        final = snap.final
        before = _value_and_flow(session, snap.account, snap.snapshot_date)
        _delete_rows(session, [snapshot_id], nav=False)
        stored = _fill(session, snap, frames, warnings, after_close=True)
        snap.final = final
        kept = session.get(SnapshotNav, snapshot_id) is not None
        if not kept or _value_and_flow(session, snap.account, snap.snapshot_date) != before:
            with _refused_as_store_error(snap.account, "ledger_flows"):
                _insert_flows(session, snap.account, snap.snapshot_date)
            with _refused_as_store_error(snap.account, "snapshot_nav"):
                _insert_nav(session, snap.account, snap.snapshot_date)
        return stored.counts


def recover_failed(engine: sa.Engine, snapshot_id: int, *,
                   frames: Mapping[str, TableRows], warnings: Sequence[str],
                   after_close: bool) -> StoredSnapshot | None:
    """Turn a failed attempt whose payloads now normalize into the complete snapshot of
    its session, with its original taken_at (superseding an earlier one); None when the
    account has a complete snapshot of that session taken later (which stays)."""
    with Session(engine) as session, session.begin():
        snap = session.get(Snapshot, snapshot_id, with_for_update=True)
        if snap is None or snap.status != SNAPSHOT_FAILED:
            raise LookupError(f"snapshot {snapshot_id} is not a failed attempt")
        _one_writer_per_session(session, snap.account, snap.snapshot_date)
        current = list(session.scalars(_complete_query(snap.account, snap.snapshot_date)))
        if any(c.taken_at >= snap.taken_at for c in current):
            return None
        _supersede(session, [c.id for c in current])
        snap.status = SNAPSHOT_OK
        snap.error = None
        session.flush()
        stored = _fill(session, snap, frames, warnings, after_close)
        with _refused_as_store_error(snap.account, "ledger_flows"):
            _insert_flows(session, snap.account, snap.snapshot_date)
        with _refused_as_store_error(snap.account, "snapshot_nav"):
            _insert_nav(session, snap.account, snap.snapshot_date)
        return stored


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
