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
from snapshotter.store import imports as db
from snapshotter.store import lots_due
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
    rebuilt: int = 0  # instruments whose lots were rebuilt
    instruments: int = 0  # instruments with lots or actions

    def line(self) -> str:
        return (f"{self.account}: FIFO lots rebuilt: {self.realised} realised "
                f"({self.unmatched} unmatched), {self.still_open} open")

    def rebuilt_line(self) -> str:
        return f"lots of {self.rebuilt} of {self.instruments} instruments rebuilt"


@dataclass
class ImportResult:
    files: list[FileResult] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    lots: LotsSummary | None = None
    lost: str | None = None  # the database went away mid-import: what was stored
    forgotten: list[str] = field(default_factory=list)  # `import forget`: one line a file


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
        if kind in ("tradebook", "actions") and result.files:  # what the lots come from
            _rebuild_after_import(engine, config.database_url, user_id, result)
    return result


def _lost(exc: sa.exc.SQLAlchemyError, url: str, stored: Sequence[FileResult],
          not_stored: Sequence[str], *, lots_pending: bool = False) -> str:
    """The one line for a database lost mid-import: what it said, and what is stored."""
    said = [f"{done.file}: file stored" for done in stored]
    if lots_pending and said:
        said[-1] += "; lots not rebuilt, the next run rebuilds them"
    said += [f"{path}: not stored (nothing of it; import it again)" for path in not_stored]
    return "; ".join([str(unavailable(exc, url)), *said])


def _rebuild_after_import(engine: sa.Engine, url: str, account: str,
                          result: ImportResult) -> None:
    """The lots brought up to date after files were stored (or forgotten): a failure is a
    warning (the stale marks went in with the files, so the next rebuild takes them up);
    the database lost on the way is ``result.lost``."""
    try:
        result.lots = rebuild_lots(engine, account)
    except Exception as exc:
        if isinstance(exc, sa.exc.SQLAlchemyError) and is_connection_error(exc):
            result.lost = _lost(exc, url, result.files, [], lots_pending=True)
            return
        result.warnings.append(
            f"{account}: file stored; lots not rebuilt ({_first_line(exc)}): the next "
            "import or run rebuilds them")
    else:
        log.info("%s: %s", account, result.lots.rebuilt_line())


def forget_files(config: Config, engine: sa.Engine, paths: Sequence[str], account: str,
                 ) -> ImportResult:
    """``snapshotter import forget``: remove what each file added to ``account`` (its
    rows and its console_files row), then bring the lots up to date. A path that is a
    file here is matched by its bytes (sha256), else by the name it was imported
    under; a name shared by files of other bytes is refused (give the file)."""
    user_id = config.account(account.strip().upper()).user_id
    result = ImportResult()
    deadline = time.monotonic() + config.kite.run_timeout
    with run_lock(config.database_url, deadline=deadline):
        kinds: set[str] = set()
        for path in paths:
            with engine.begin() as conn:
                found = _imported(conn, path, user_id)
                if isinstance(found, str):
                    result.errors.append(f"{path}: {found}")
                    continue
                gone = db.forget_files(conn, user_id, found)
            kinds |= gone.kinds
            result.forgotten.append(
                f"{path}: forgot {gone.rows} rows that {gone.files} imported "
                f"{'file' if gone.files == 1 else 'files'} ({', '.join(sorted(gone.kinds))}) "
                "added")
        if kinds & {"tradebook", "actions"}:
            _rebuild_after_import(engine, config.database_url, user_id, result)
    return result


def _imported(conn: sa.Connection, path: str, account: str) -> list[int] | str:
    """The console_files ids ``path`` stands for, or why none."""
    file = Path(path)
    if file.is_file():
        try:
            with file.open("rb") as stream:
                sha256 = hashlib.file_digest(stream, "sha256").hexdigest()
        except OSError as exc:
            return f"cannot read: {exc.strerror or exc}"
        ids = db.imported_files(conn, account, sha256=sha256)
        return ids or f"no file with these bytes was imported for {account}"
    ids = db.imported_files(conn, account, file_name=file.name)
    if not ids:
        return f"not a file here, and no file imported for {account} is named {file.name!r}"
    shas = db.file_hashes(conn, ids)
    if len(set(shas)) > 1:
        return (f"{len(set(shas))} different files imported for {account} are named "
                f"{file.name!r}: give the file itself, its bytes say which")
    return ids


def rebuild_lots(engine: sa.Engine, account: str, *, whole: bool = False) -> LotsSummary:
    """The account's FIFO lots (realised_lots, open_lots, trade_positions) brought up to
    date in one transaction: rebuilt for the instruments whose trades changed (marked
    stale by the import or ``import forget`` that changed them) and those whose
    corporate actions are not the ones their lots were built with (a new snapshot can
    show a split); the other instruments' lots are left as they are. ``whole``, or
    stored lots that are not the ones ``lot_instruments`` counts: every instrument.
    Blank ISINs of stored trades are filled on the way."""
    with engine.begin() as conn:
        state = db.lot_state(conn, account).set_index("instrument")
        if not whole:
            counted = (int(state["realised_lots"].sum()), int(state["open_lots"].sum()))
            whole = db.lot_counts(conn, account) != counted
        stale = set(state.index[state["stale"].astype(bool)])
        touched = _fill_isins(conn, account, None if whole else stale)
        observed = db.observed_actions(conn, account)
        listed = db.listed_actions(conn, account)
        blank = pd.concat([observed.loc[observed["isin"].isna(), "tradingsymbol"],
                           listed.loc[listed["isin"].isna(), "tradingsymbol"]])
        isins = db.symbol_trades(conn, account, set(blank)).dropna(subset=["isin"])
        found = lots.actions(isins, observed, listed)
        applied = lots.applied(found)
        if whole:
            rebuild: set[str] | None = None
            keys = db.equity_instruments(conn, account) | set(applied) | set(state.index)
        else:
            built = state["actions"].to_dict()
            rebuild = stale | touched | {key for key in set(applied) | set(built)
                                         if applied.get(key, "") != built.get(key, "")}
            keys = rebuild
        book = lots.build(db.instrument_trades(conn, account, rebuild), found)
        rows = _state_rows(keys, applied, book)
        db.replace_lots(conn, account, rebuild, book.realised, book.open, book.positions,
                        rows)
        after = db.lot_state(conn, account)
    had = state[(state["actions"] != "") | (state["realised_lots"] > 0)
                | (state["open_lots"] > 0)].index
    rebuilt = set(rows["instrument"]) | (keys & set(had))
    return LotsSummary(account, int(after["realised_lots"].sum()),
                       int(after["unmatched_lots"].sum()), int(after["open_lots"].sum()),
                       rebuilt=len(rebuilt), instruments=len(after))


def _fill_isins(conn: sa.Connection, account: str, keys: set[str] | None) -> set[str]:
    """Stored trades with a blank ISIN take the one the symbol's other trades give
    (``keys``: only those of these symbols; None: all); the instruments that changed
    (the symbol the trades were matched by, and the ISIN they now have)."""
    symbols = None if keys is None else db.blank_isin_symbols(conn, account, keys)
    if symbols is not None and not symbols:
        return set()
    trades = db.symbol_trades(conn, account, symbols)
    if trades.empty:
        return set()
    filled = tradebook.fill_isin(trades)
    gained = trades["isin"].isna() & filled["isin"].notna()
    db.fill_isins(conn, list(zip(trades.loc[gained, "id"].astype(int),
                                 filled.loc[gained, "isin"], strict=True)))
    changed = trades[gained & trades["segment"].isin(lots.EQUITY_SEGMENTS)]
    return set(changed["tradingsymbol"]) | set(filled.loc[changed.index, "isin"])


def _state_rows(keys: set[str], applied: dict[str, str], book: lots.LotBook,
                ) -> pd.DataFrame:
    """lot_instruments rows of ``keys`` that have lots or actions."""
    realised = book.realised.groupby("instrument").size()
    unmatched = book.realised.groupby("instrument")["unmatched"].sum()
    still_open = book.open.groupby("instrument").size()
    with_trades = set(book.positions["instrument"]) | set(realised.index) \
        | set(still_open.index)
    kept = sorted(k for k in keys if k in applied or k in with_trades)
    return pd.DataFrame({
        "instrument": kept, "actions": [applied.get(k, "") for k in kept],
        "realised_lots": [int(realised.get(k, 0)) for k in kept],
        "unmatched_lots": [int(unmatched.get(k, 0)) for k in kept],
        "open_lots": [int(still_open.get(k, 0)) for k in kept],
        "stale": [False] * len(kept)})


def rebuild_after_run(engine: sa.Engine, stored: Sequence[str],
                      others: Sequence[str] = ()) -> None:
    """After a run: the lots of the accounts it ``stored`` snapshots of that have trades
    (a new snapshot can show a split or bonus), and of the ``others`` whose lots wait for
    a rebuild (an import cut off before it), where they changed. A failure is a warning
    line, never fails the run: the stale instruments stay marked, the next run or import
    tries again."""
    rebuild_accounts(engine, lots_due.after_run(engine, stored, others))


def rebuild_accounts(engine: sa.Engine, accounts: Sequence[str]) -> None:
    """``rebuild_after_run``'s rebuilds, of the accounts ``lots_due.after_run`` named."""
    for account in accounts:
        try:
            summary = rebuild_lots(engine, account)
        except Exception as exc:
            log.warning("%s: FIFO lots not rebuilt (%s); the next run tries again",
                        account, redact.redact(_first_line(exc)))
            continue
        log.info("%s (%s)", summary.line(), summary.rebuilt_line())


def _first_line(exc: BaseException) -> str:
    text = str(exc).splitlines()[0] if str(exc) else ""
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__
