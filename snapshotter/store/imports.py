"""Console imports, stored: the new rows of an imported file stored once (by each
table's natural key), a file's rows forgotten, and the FIFO lots of the instruments that
changed replaced (``lot_instruments`` says what each instrument's lots were built with)."""

from __future__ import annotations

from collections.abc import Collection, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import pandas as pd
import sqlalchemy as sa

from snapshotter.rows import frame_records
from snapshotter.store import writes
from snapshotter.store.models import (
    Base,
    ConsoleFile,
    CorporateActionEntry,
    Dividend,
    LedgerEntry,
    LotInstrument,
    OpenLot,
    RealisedLot,
    Trade,
    TradePosition,
)


def _table(model: type[Base]) -> sa.Table:
    return model.metadata.tables[model.__tablename__]


_FILES = _table(ConsoleFile)
IMPORT_TABLES: dict[str, sa.Table] = {  # file kind -> the table of its rows
    "tradebook": _table(Trade), "ledger": _table(LedgerEntry),
    "dividends": _table(Dividend), "actions": _table(CorporateActionEntry),
}
# Within an account, what identifies a row: a re-import finds it "already known".
KEYS: dict[str, tuple[str, ...]] = {
    "tradebook": ("exchange", "trade_id"),
    "ledger": ("posting_date", "voucher_type", "particulars", "debit", "credit", "occurrence"),
    "dividends": ("tradingsymbol", "ex_date", "dividend_per_share", "occurrence"),
    "actions": ("tradingsymbol", "ex_date", "action"),
}
# A trade id already stored with other values than the file's is warned about.
SAME_TRADE = ("tradingsymbol", "trade_date", "trade_type", "quantity", "price")
EQUITY_SEGMENTS = ("EQ",)  # the segments with lots (console.lots)
# Bound parameters per IN list: PostgreSQL takes at most 65,535 in a statement.
IN_CHUNK = 1000


@dataclass
class Stored:
    rows: int
    new: int
    conflicts: list[tuple[int, str]] = field(default_factory=list)  # (line, trade id)

    @property
    def known(self) -> int:
        return self.rows - self.new


def store_file(engine: sa.Engine, kind: str, account: str, file_name: str, sha256: str,
               frame: pd.DataFrame, now: datetime) -> Stored:
    """One transaction: the file's ``console_files`` row and its rows whose key the
    account does not have yet (``frame``'s ``line`` column says where each came from).
    A ledger file also records the days it covers (its first and last posting date),
    and the account's ``ledger_flows`` (and the NAVs from the first flow that changed)
    are recomputed."""
    table, key = IMPORT_TABLES[kind], KEYS[kind]
    columns = [c.name for c in table.columns
               if c.name not in ("id", "account", "file_id", "source_file")]
    with engine.begin() as conn:
        known = pd.DataFrame(
            conn.execute(sa.select(*(table.c[k] for k in (*key, *_compared(kind))))
                         .where(table.c.account == account)).all(),
            columns=[*key, *_compared(kind)])
        marked = frame.merge(known, on=list(key), how="left", indicator=True,
                             suffixes=("", "_stored"))
        new = frame[(marked["_merge"] == "left_only").to_numpy()]
        stored = Stored(len(frame), len(new), _conflicts(kind, marked))
        covered = {}
        if kind == "ledger" and frame["posting_date"].notna().any():
            covered = {"first_date": frame["posting_date"].min(),
                       "last_date": frame["posting_date"].max()}
        file_id = conn.execute(sa.insert(_FILES).values(
            account=account, kind=kind, file_name=file_name, sha256=sha256,
            imported_at=now, rows=len(frame), new_rows=len(new), **covered,
        ).returning(_FILES.c.id)).scalar_one()
        rows = frame_records(new[columns], {"account": account, "file_id": file_id,
                                            "source_file": file_name})
        if rows:
            conn.execute(sa.insert(table), rows)
        if kind == "tradebook":
            mark_stale(conn, account, _touched(new))
        if kind == "ledger":
            writes.refresh_ledger_flows(conn, account)
    return stored


def _touched(trades: pd.DataFrame) -> set[str]:
    """The lot instruments new or removed trades change: each one's ISIN (or symbol),
    and its symbol, whose stored trades with a blank ISIN may take the ISIN it has."""
    equity = trades[trades["segment"].isin(EQUITY_SEGMENTS)]
    isin = equity["isin"].where(equity["isin"].notna() & (equity["isin"] != ""),
                                equity["tradingsymbol"])
    return {str(k) for k in (*isin.unique(), *equity["tradingsymbol"].unique())}


@dataclass
class Forgotten:
    files: int
    rows: int
    kinds: set[str]


def imported_files(conn: sa.Connection, account: str, *, sha256: str | None = None,
                   file_name: str | None = None) -> list[int]:
    """The ids of the account's imported files with these bytes (or this name)."""
    query = sa.select(_FILES.c.id).where(_FILES.c.account == account)
    if sha256 is not None:
        query = query.where(_FILES.c.sha256 == sha256)
    if file_name is not None:
        query = query.where(_FILES.c.file_name == file_name)
    return list(conn.execute(query.order_by(_FILES.c.id)).scalars())


def file_hashes(conn: sa.Connection, file_ids: Sequence[int]) -> list[str]:
    return list(conn.execute(sa.select(_FILES.c.sha256)
                             .where(_FILES.c.id.in_(list(file_ids)))).scalars())


def forget_files(conn: sa.Connection, account: str, file_ids: Sequence[int]) -> Forgotten:
    """The rows these files added, and the files' ``console_files`` rows, deleted; the
    instruments of the trades removed marked stale, the ledger flows recomputed."""
    kinds = set(conn.execute(sa.select(_FILES.c.kind).distinct()
                             .where(_FILES.c.id.in_(list(file_ids)))).scalars())
    removed = 0
    for kind in sorted(kinds):
        table = IMPORT_TABLES[kind]
        mine = table.c.file_id.in_(list(file_ids))
        if kind == "tradebook":
            gone = pd.DataFrame(conn.execute(
                sa.select(table.c.tradingsymbol, table.c.isin, table.c.segment).distinct()
                .where(mine)).all(), columns=["tradingsymbol", "isin", "segment"])
            mark_stale(conn, account, _touched(gone))
        removed += conn.execute(sa.delete(table).where(mine)).rowcount
    conn.execute(sa.delete(_FILES).where(_FILES.c.id.in_(list(file_ids))))
    if "ledger" in kinds:
        writes.refresh_ledger_flows(conn, account)
    return Forgotten(len(file_ids), removed, kinds)


def _compared(kind: str) -> tuple[str, ...]:
    return tuple(c for c in SAME_TRADE if c not in KEYS[kind]) if kind == "tradebook" else ()


def _conflicts(kind: str, marked: pd.DataFrame) -> list[tuple[int, str]]:
    if kind != "tradebook":
        return []
    both = marked[marked["_merge"] == "both"]
    differ = pd.Series(False, index=both.index)
    for column in SAME_TRADE:
        differ |= both[column] != both[f"{column}_stored"]
    return [(int(line), str(trade)) for line, trade
            in zip(both.loc[differ, "line"], both.loc[differ, "trade_id"], strict=True)]


def _chunks(keys: Collection[str]) -> Iterator[list[str]]:
    ordered = sorted(keys)
    for start in range(0, len(ordered), IN_CHUNK):
        yield ordered[start:start + IN_CHUNK]


def _frame(conn: sa.Connection, queries: Sequence[sa.Select[Any]]) -> pd.DataFrame:
    parts = []
    columns: list[str] = []
    for query in queries:
        result = conn.execute(query)
        columns = list(result.keys())
        parts.append(pd.DataFrame(result.all(), columns=columns))
    return pd.concat(parts, ignore_index=True) if len(parts) > 1 else parts[0]


def instrument_trades(conn: sa.Connection, account: str,
                      instruments: Collection[str] | None) -> pd.DataFrame:
    """The account's equity trades of ``instruments`` (the ISIN, or the symbol of
    trades without one; None: all), in id order."""
    table = _table(Trade)
    base = sa.select(table).where(table.c.account == account,
                                  table.c.segment.in_(EQUITY_SEGMENTS))
    if instruments is None:
        return _frame(conn, [base.order_by(table.c.id)])
    queries = [base.where(table.c.isin.in_(chunk)) for chunk in _chunks(instruments)]
    queries += [base.where(table.c.isin.is_(None), table.c.tradingsymbol.in_(chunk))
                for chunk in _chunks(instruments)]
    if not queries:
        return _frame(conn, [base.where(sa.false())])
    return _frame(conn, queries).sort_values("id", kind="stable").reset_index(drop=True)


def symbol_trades(conn: sa.Connection, account: str,
                  symbols: Collection[str] | None) -> pd.DataFrame:
    """``id``, ``tradingsymbol``, ``isin``, ``trade_date`` of the account's trades of
    ``symbols`` (None: all), in id order."""
    table = _table(Trade)
    base = sa.select(table.c.id, table.c.tradingsymbol, table.c.isin, table.c.trade_date,
                     table.c.segment).where(table.c.account == account)
    if symbols is None:
        return _frame(conn, [base.order_by(table.c.id)])
    queries = [base.where(table.c.tradingsymbol.in_(chunk)) for chunk in _chunks(symbols)]
    if not queries:
        return _frame(conn, [base.where(sa.false())])
    return _frame(conn, queries).sort_values("id", kind="stable").reset_index(drop=True)


def blank_isin_symbols(conn: sa.Connection, account: str,
                       symbols: Collection[str]) -> set[str]:
    """Which of ``symbols`` have stored trades without an ISIN."""
    table = _table(Trade)
    found: set[str] = set()
    for chunk in _chunks(symbols):
        found |= set(conn.execute(
            sa.select(table.c.tradingsymbol).distinct()
            .where(table.c.account == account, table.c.isin.is_(None),
                   table.c.tradingsymbol.in_(chunk))).scalars())
    return found


def equity_instruments(conn: sa.Connection, account: str) -> set[str]:
    table = _table(Trade)
    key = sa.func.coalesce(sa.func.nullif(table.c.isin, ""), table.c.tradingsymbol)
    return set(conn.execute(sa.select(key).distinct().where(
        table.c.account == account, table.c.segment.in_(EQUITY_SEGMENTS))).scalars())


def fill_isins(conn: sa.Connection, ids_isins: Sequence[tuple[int, str]]) -> None:
    """Stored trades with a blank ISIN get the one their symbol's other rows give."""
    table = _table(Trade)
    if ids_isins:
        conn.execute(sa.update(table).where(table.c.id == sa.bindparam("trade"))
                     .values(isin=sa.bindparam("found")),
                     [{"trade": i, "found": isin} for i, isin in ids_isins])


def observed_actions(conn: sa.Connection, account: str) -> pd.DataFrame:
    """The ``corporate_actions`` rows of the account, with the holding's ISIN."""
    result = conn.execute(sa.text("""
        SELECT c.tradingsymbol, NULLIF(h.isin, '') AS isin, c.previous_snapshot_date,
               c.snapshot_date, c.ratio
        FROM corporate_actions c
        LEFT JOIN holdings h
            ON h.snapshot_id = c.snapshot_id AND h.exchange = c.exchange
            AND h.tradingsymbol = c.tradingsymbol
        WHERE c.account = :account
        ORDER BY c.snapshot_date, c.tradingsymbol"""), {"account": account})
    frame = pd.DataFrame(result.all(), columns=list(result.keys()))
    for column in ("previous_snapshot_date", "snapshot_date"):  # ISO text on SQLite
        frame[column] = pd.to_datetime(frame[column]).dt.date
    return frame


def listed_actions(conn: sa.Connection, account: str) -> pd.DataFrame:
    table = _table(CorporateActionEntry)
    result = conn.execute(sa.select(table.c.tradingsymbol, table.c.isin, table.c.ex_date,
                                    table.c.action, table.c.new_shares, table.c.for_every)
                          .where(table.c.account == account)
                          .order_by(table.c.ex_date, table.c.tradingsymbol, table.c.action))
    return pd.DataFrame(result.all(), columns=list(result.keys()))


def replace_lots(conn: sa.Connection, account: str, instruments: Collection[str] | None,
                 realised: pd.DataFrame, still_open: pd.DataFrame,
                 positions: pd.DataFrame, state: pd.DataFrame) -> None:
    """The account's realised_lots, open_lots, trade_positions and lot_instruments rows
    of ``instruments`` (None: all of them) replaced by these."""
    for model, frame in ((RealisedLot, realised), (OpenLot, still_open),
                         (TradePosition, positions), (LotInstrument, state)):
        table = _table(model)
        mine = table.c.account == account
        if instruments is None:
            conn.execute(sa.delete(table).where(mine))
        else:
            for chunk in _chunks(instruments):
                conn.execute(sa.delete(table).where(mine, table.c.instrument.in_(chunk)))
        rows = frame_records(frame, {"account": account})
        if rows:
            conn.execute(sa.insert(table), rows)


def mark_stale(conn: sa.Connection, account: str, instruments: Collection[str]) -> None:
    """These instruments' lots are to be rebuilt (by the import that changed their
    trades, else by the next one or the next run)."""
    table = _table(LotInstrument)
    known: set[str] = set()
    for chunk in _chunks(instruments):
        mine = sa.and_(table.c.account == account, table.c.instrument.in_(chunk))
        known |= set(conn.execute(sa.select(table.c.instrument).where(mine)).scalars())
        conn.execute(sa.update(table).where(mine).values(stale=True))
    new = [{"account": account, "instrument": key, "actions": "", "realised_lots": 0,
            "unmatched_lots": 0, "open_lots": 0, "stale": True}
           for key in sorted(set(instruments) - known)]
    if new:
        conn.execute(sa.insert(table), new)


def lot_state(conn: sa.Connection, account: str) -> pd.DataFrame:
    """The account's lot_instruments rows."""
    table = _table(LotInstrument)
    return _frame(conn, [sa.select(table.c.instrument, table.c.actions,
                                   table.c.realised_lots, table.c.unmatched_lots,
                                   table.c.open_lots, table.c.stale)
                         .where(table.c.account == account)])


def lot_counts(conn: sa.Connection, account: str) -> tuple[int, int]:
    """How many realised and open lots the account has."""
    counts = []
    for model in (RealisedLot, OpenLot):
        table = _table(model)
        counts.append(int(conn.execute(sa.select(sa.func.count()).select_from(table)
                                       .where(table.c.account == account)).scalar_one()))
    return counts[0], counts[1]
