"""The Console tables: new rows of an imported file stored once (by each table's natural
key), and the per-account lots replaced whole."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime

import pandas as pd
import sqlalchemy as sa

from snapshotter.normalize import frame_records
from snapshotter.store import writes
from snapshotter.store.models import (
    Base,
    ConsoleFile,
    CorporateActionEntry,
    Dividend,
    LedgerEntry,
    OpenLot,
    RealisedLot,
    Trade,
    TradePosition,
)


def _table(model: type[Base]) -> sa.Table:
    return model.metadata.tables[model.__tablename__]


_FILES = _table(ConsoleFile)
TABLES: dict[str, sa.Table] = {
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
    table, key = TABLES[kind], KEYS[kind]
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
        if kind == "ledger":
            writes.refresh_ledger_flows(conn, account)
    return stored


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


def account_trades(conn: sa.Connection, account: str) -> pd.DataFrame:
    table = _table(Trade)
    result = conn.execute(sa.select(table).where(table.c.account == account)
                          .order_by(table.c.id))
    return pd.DataFrame(result.all(), columns=list(result.keys()))


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
                          .where(table.c.account == account).order_by(table.c.ex_date))
    return pd.DataFrame(result.all(), columns=list(result.keys()))


def replace_lots(conn: sa.Connection, account: str, realised: pd.DataFrame,
                 still_open: pd.DataFrame, positions: pd.DataFrame) -> None:
    """The account's realised_lots, open_lots and trade_positions, replaced whole."""
    for model, frame in ((RealisedLot, realised), (OpenLot, still_open),
                         (TradePosition, positions)):
        table = _table(model)
        conn.execute(sa.delete(table).where(table.c.account == account))
        rows = frame_records(frame, {"account": account})
        if rows:
            conn.execute(sa.insert(table), rows)


def accounts_with_trades(engine: sa.Engine, accounts: Sequence[str]) -> list[str]:
    table = _table(Trade)
    with engine.connect() as conn:
        return sorted(conn.execute(sa.select(table.c.account).distinct()
                                   .where(table.c.account.in_(list(accounts)))).scalars())
