"""`snapshotter import`: Console's files into the database, then the account's FIFO lots
rebuilt (``run`` rebuilds them too, for accounts with trades: a snapshot can show a
split).

Each file is read (a regular file, within ``import.max_file_mb``) and checked whole
first, before the run lock is taken; a bad one is one error naming the file and line,
and nothing of it is stored. Then, under the database's run lock (so an import and a
run never rebuild the same account's lots at once), each good one is stored in one
transaction: the rows whose key the account already has are "already known"
(re-importing an overlapping export adds nothing twice).
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import pandas as pd
import sqlalchemy as sa

from snapshotter import redact
from snapshotter.config import Config
from snapshotter.console import actions, dividends, ledger, lots, tradebook
from snapshotter.console.files import BadFile, is_xlsx, read_file
from snapshotter.normalize import clean_text
from snapshotter.store import console as db
from snapshotter.store.engine import is_connection_error, unavailable
from snapshotter.store.lock import run_lock
from snapshotter.store.models import LEDGER_KINDS

log = logging.getLogger(__name__)

KINDS = ("tradebook", "ledger", "dividends", "actions")


@dataclass
class FileResult:
    file: str
    rows: int
    new: int
    known: int
    detail: str = ""

    def line(self) -> str:
        extra = f" ({self.detail})" if self.detail else ""
        return f"{self.file}: {self.new} new, {self.known} already known{extra}"


@dataclass
class LotsSummary:
    account: str
    realised: int
    unmatched: int
    still_open: int

    def line(self) -> str:
        return (f"{self.account}: FIFO lots rebuilt: {self.realised} realised "
                f"({self.unmatched} unmatched), {self.still_open} open")


@dataclass
class ImportResult:
    files: list[FileResult] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    lots: LotsSummary | None = None
    lost: str | None = None  # the database went away mid-import: what was stored


@dataclass(frozen=True)
class _Read:
    frame: pd.DataFrame
    client_id: str | None = None
    warnings: tuple[str, ...] = ()
    detail: str = ""


def _read(kind: str, data: bytes, file: str, max_unpacked: int) -> _Read:
    if kind == "tradebook":
        trades = tradebook.parse(data, file, max_unpacked=max_unpacked)
        return _Read(trades.frame, trades.client_id, tuple(trades.warnings))
    if kind == "ledger":
        entries = ledger.parse(data, file, max_unpacked=max_unpacked)
        counts = entries.frame["kind"].value_counts()
        detail = ", ".join(f"{k} {counts[k]}" for k in LEDGER_KINDS if k in counts)
        return _Read(entries.frame, detail=detail)
    if kind == "dividends":
        paid = dividends.parse(data, file, max_unpacked=max_unpacked)
        return _Read(paid.frame, paid.client_id)
    return _Read(actions.parse(data, file, max_unpacked=max_unpacked))


@dataclass(frozen=True)
class _Ready:
    """A file read and checked, waiting for the run lock to be stored."""

    path: str
    sha256: str
    where: str  # "line" or "row": how its warnings name a place
    read: _Read


def _prepare(kind: str, path: str, account: str, max_bytes: int) -> _Ready:
    data = read_file(path, max_bytes)
    read = _read(kind, data, path, max_bytes)
    if read.client_id and read.client_id != account:
        raise BadFile(path, f"the file is for client {read.client_id}, not {account}")
    return _Ready(path, hashlib.sha256(data).hexdigest(),
                  "row" if is_xlsx(data, path) else "line", read)


def import_files(config: Config, engine: sa.Engine, kind: str, paths: Sequence[str],
                 account: str, *, clock: Callable[[], datetime]) -> ImportResult:
    """Import ``paths`` (Console exports of ``kind``) into ``account``; after trades or
    actions, rebuild its lots. ``account`` must be configured (else ConfigError, exit 2).
    The files are read and checked first, without the run lock (a slow or hostile file
    never keeps a run waiting); the lock is held only to store them and rebuild."""
    user_id = config.account(account.strip().upper()).user_id
    result = ImportResult()
    ready: list[_Ready] = []
    for path in paths:
        try:
            ready.append(_prepare(kind, path, user_id, config.imports.max_bytes))
        except BadFile as exc:
            result.errors.append(str(exc))
    if not ready:
        return result
    deadline = time.monotonic() + config.kite.run_timeout
    with run_lock(config.database_url, deadline=deadline):
        for position, file in enumerate(ready):
            try:
                stored = db.store_file(engine, kind, user_id, clean_text(Path(file.path).name),
                                       file.sha256, file.read.frame, clock())
            except sa.exc.SQLAlchemyError as exc:
                if not is_connection_error(exc):
                    raise
                result.lost = _lost(exc, config.database_url, result.files,
                                    [f.path for f in ready[position:]])
                return result
            result.warnings += file.read.warnings
            result.warnings += [
                f"{file.path}: {file.where} {line}: trade {trade} is already stored with "
                "other values; the stored one is kept" for line, trade in stored.conflicts]
            result.files.append(FileResult(file.path, stored.rows, stored.new, stored.known,
                                           file.read.detail))
        if kind in ("tradebook", "actions"):  # what the lots come from
            try:
                result.lots = rebuild_lots(engine, user_id)
            except sa.exc.SQLAlchemyError as exc:
                if not is_connection_error(exc):
                    raise
                result.lost = _lost(exc, config.database_url, result.files, [],
                                    lots_pending=True)
    return result


def _lost(exc: sa.exc.SQLAlchemyError, url: str, stored: Sequence[FileResult],
          not_stored: Sequence[str], *, lots_pending: bool = False) -> str:
    """The one line for a database lost mid-import: what it said, and what is stored."""
    said = [f"{done.file}: file stored" for done in stored]
    if lots_pending and said:
        said[-1] += "; lots not rebuilt, the next run rebuilds them"
    said += [f"{path}: not stored (nothing of it; import it again)" for path in not_stored]
    return f"{unavailable(exc, url)}; {'; '.join(said)}"


def rebuild_lots(engine: sa.Engine, account: str) -> LotsSummary:
    """The account's realised_lots, open_lots and trade_positions from its trades and
    corporate actions, replaced in one transaction (blank ISINs of stored trades are
    filled on the way)."""
    with engine.begin() as conn:
        trades = db.account_trades(conn, account)
        if not trades.empty:
            filled = tradebook.fill_isin(trades)
            gained = trades["isin"].isna() & filled["isin"].notna()
            db.fill_isins(conn, list(zip(trades.loc[gained, "id"].astype(int),
                                         filled.loc[gained, "isin"], strict=True)))
            trades = filled
        found = lots.actions(trades, db.observed_actions(conn, account),
                             db.listed_actions(conn, account)) if not trades.empty \
            else pd.DataFrame(columns=lots.ACTION_COLUMNS)
        book = lots.build(trades if not trades.empty else _no_trades(), found)
        db.replace_lots(conn, account, book.realised, book.open, book.positions)
    return LotsSummary(account, len(book.realised), int(book.realised["unmatched"].sum()),
                       len(book.open))


def _no_trades() -> pd.DataFrame:
    return pd.DataFrame(columns=["tradingsymbol", "isin", "trade_date", "segment",
                                 "trade_type", "quantity", "price", "trade_id",
                                 "order_execution_time"])


def rebuild_after_run(engine: sa.Engine, accounts: Sequence[str]) -> None:
    """After a run stored snapshots: the lots of those accounts that have trades (a new
    snapshot can show a split or bonus). A failure is logged, never fails the run."""
    try:
        for account in db.accounts_with_trades(engine, accounts):
            log.info("%s", rebuild_lots(engine, account).line())
    except (sa.exc.SQLAlchemyError, ValueError, KeyError) as exc:
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        log.error("could not rebuild the FIFO lots: %s", redact.redact(first))
