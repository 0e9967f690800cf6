"""`snapshotter import`: Console's files into the database, then the account's FIFO lots
rebuilt (``run`` rebuilds them too, for accounts with trades: a snapshot can show a
split).

Each file is read and checked whole first; a bad one is one error naming the file and
line, and nothing of it is stored. A good one is stored in one transaction: the rows
whose key the account already has are "already known" (re-importing an overlapping
export adds nothing twice). Runs under the database's run lock, so an import and a
run never rebuild the same account's lots at once.
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
from snapshotter.console.files import BadFile, is_xlsx
from snapshotter.store import console as db
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


@dataclass(frozen=True)
class _Read:
    frame: pd.DataFrame
    client_id: str | None = None
    warnings: tuple[str, ...] = ()
    detail: str = ""


def _read(kind: str, data: bytes, file: str) -> _Read:
    if kind == "tradebook":
        trades = tradebook.parse(data, file)
        return _Read(trades.frame, trades.client_id, tuple(trades.warnings))
    if kind == "ledger":
        entries = ledger.parse(data, file)
        counts = entries.frame["kind"].value_counts()
        detail = ", ".join(f"{k} {counts[k]}" for k in LEDGER_KINDS if k in counts)
        return _Read(entries.frame, detail=detail)
    if kind == "dividends":
        paid = dividends.parse(data, file)
        return _Read(paid.frame, paid.client_id)
    return _Read(actions.parse(data, file))


def import_files(config: Config, engine: sa.Engine, kind: str, paths: Sequence[str],
                 account: str, *, clock: Callable[[], datetime]) -> ImportResult:
    """Import ``paths`` (Console exports of ``kind``) into ``account``; after trades or
    actions, rebuild its lots. ``account`` must be configured (else ConfigError, exit 2)."""
    user_id = config.account(account.strip().upper()).user_id
    result = ImportResult()
    deadline = time.monotonic() + config.kite.run_timeout
    with run_lock(config.database_url, deadline=deadline):
        for path in paths:
            name = Path(path).name
            try:
                data = Path(path).read_bytes()
            except OSError as exc:
                result.errors.append(f"{path}: cannot read: {exc.strerror or exc}")
                continue
            try:
                read = _read(kind, data, path)
                if read.client_id and read.client_id != user_id:
                    raise BadFile(path, f"the file is for client {read.client_id}, "
                                        f"not {user_id}")
            except BadFile as exc:
                result.errors.append(str(exc))
                continue
            stored = db.store_file(engine, kind, user_id, name,
                                   hashlib.sha256(data).hexdigest(), read.frame, clock())
            result.warnings += read.warnings
            where = "row" if is_xlsx(data, path) else "line"
            result.warnings += [
                f"{path}: {where} {line}: trade {trade} is already stored with other "
                "values; the stored one is kept" for line, trade in stored.conflicts]
            result.files.append(FileResult(path, stored.rows, stored.new, stored.known,
                                           read.detail))
        if kind in ("tradebook", "actions") and result.files:  # what the lots come from
            result.lots = rebuild_lots(engine, user_id)
    return result


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
