"""Benchmark closes into ``benchmark_daily``: from an index CSV (`benchmark import`) or
from Kite's daily candles through an account's session (`benchmark fetch`).

A fetch logs in as a run does, under the run lock: it reuses the account's cached
session, never tries credentials Kite rejected (the session cache's memory and the
ledger's), respects TOTP steps other hosts used, and records a rejection in the ledger
so that every replica sees it.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from pathlib import Path

import pandas as pd
import sqlalchemy as sa

from snapshotter import redact
from snapshotter.config import AccountConfig, Config
from snapshotter.errors import (
    ExitCode,
    LoginRejected,
    PermissionDenied,
    SnapshotterError,
    UsageError,
)
from snapshotter.normalize.benchmark import (
    BenchmarkFileError,
    benchmark_name,
    closes_from_candles,
    parse_index_csv,
)
from snapshotter.normalize.values import PayloadError
from snapshotter.pipeline.outcomes import Clock, credentials_digest
from snapshotter.routes import INDEX_TOKENS
from snapshotter.sessions import IST, calendar_for, utc_now
from snapshotter.store import benchmarks
from snapshotter.store import writes as store
from snapshotter.store.benchmarks import StoredCloses
from snapshotter.store.lock import run_lock

log = logging.getLogger(__name__)

# Without --from and with no closes of the benchmark stored yet: this long before the
# first snapshot (so that its window's start has a close on or before it), else a year.
BEFORE_FIRST_SNAPSHOT = timedelta(days=14)
DEFAULT_SPAN = timedelta(days=365)


class BenchmarkUnavailable(SnapshotterError):
    """Kite will not give this account market data (Kite Connect's Personal plan)."""

    exit_code = ExitCode.USAGE


@dataclass(frozen=True)
class Fetched:
    stored: StoredCloses
    account: str
    start: date
    end: date


def read_index_file(path: Path) -> pd.DataFrame:
    """The closes of an NSE-style index CSV file; a bad file is refused whole
    (``BenchmarkFileError``, naming the file), before the database is opened."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise BenchmarkFileError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise BenchmarkFileError(f"{path}: is a directory, not a CSV file") from None
    except OSError as exc:
        raise BenchmarkFileError(f"{path}: cannot read it ({exc.strerror})") from None
    return parse_index_csv(data, str(path))


def store_closes(engine: sa.Engine, name: str, closes: pd.DataFrame) -> StoredCloses:
    """Upsert ``closes`` under ``name`` (see ``benchmark_name``) in one transaction."""
    return benchmarks.upsert_closes(engine, benchmark_name(name), closes)


def fetch_account(config: Config, user_id: str | None) -> AccountConfig:
    """The account named, else the first whose data goes through the web session (auth:
    web, or manual without an api_key), else the first account."""
    # `benchmark import` never logs in: the login code loads for a fetch only.
    from snapshotter.kite.auth import auth_for
    from snapshotter.pipeline.run import select_accounts

    if user_id:
        return select_accounts(config, [user_id])[0]
    if not config.accounts:
        raise UsageError("no accounts in the config")
    web = [a for a in config.accounts if not auth_for(a).connect_api]
    return (web or list(config.accounts))[0]


def fetch_closes(config: Config, engine: sa.Engine, name: str, *,
                 account: str | None = None, start: date | None = None,
                 end: date | None = None, clock: Clock = utc_now) -> Fetched:
    """Daily closes of a known index (``routes.INDEX_TOKENS``) from Kite's historical
    route, upserted under ``name``. Default ``end``: today (IST); default ``start``: the
    latest close stored for ``name`` (fetched again: it may have been taken before the
    close), else 14 days before the first snapshot, else a year before ``end``."""
    name = benchmark_name(name)
    token = INDEX_TOKENS.get(name)
    if token is None:
        raise UsageError(f"benchmark fetch knows {', '.join(INDEX_TOKENS)}, not {name}; "
                         f"import its closes with `snapshotter benchmark import {name} "
                         "FILE.csv`")
    acc = fetch_account(config, account)
    end = end or clock().astimezone(IST).date()
    if start is None:
        latest = benchmarks.latest_close_date(engine, name)
        first = benchmarks.first_snapshot_date(engine)
        start = latest or (first - BEFORE_FIRST_SNAPSHOT if first else end - DEFAULT_SPAN)
        start = min(start, end)
    if start > end:
        raise UsageError(f"--from {start} is after --to {end}")
    candles = _candles(config, engine, acc, token, start, end, clock)
    label = f"account {acc.user_id}: historical {token} {start}..{end}"
    try:
        closes = closes_from_candles(candles, label)
    except PayloadError as exc:
        raise SnapshotterError(str(exc)) from None
    outside = closes[(closes["date"] < start) | (closes["date"] > end)]
    if not outside.empty:
        raise SnapshotterError(f"{label}: Kite answered a candle of {outside['date'].iloc[0]}, "
                               "outside the dates asked; nothing stored")
    return Fetched(benchmarks.upsert_closes(engine, name, closes), acc.user_id, start, end)


def _candles(config: Config, engine: sa.Engine, acc: AccountConfig, token: int,
             start: date, end: date, clock: Clock) -> list[object]:
    from snapshotter.kite.auth import auth_for, refusal, same_credentials
    from snapshotter.kite.client import KiteClient
    from snapshotter.kite.token_cache import TokenCache
    from snapshotter.pipeline.run import respect_other_hosts_totp
    from snapshotter.pipeline.storing import step_reserver

    deadline = time.monotonic() + config.kite.run_timeout
    with run_lock(config.database_url, deadline=deadline) as lock:
        refused = store.rejected_credentials(engine, [acc.user_id]).get(acc.user_id)
        if refused is not None and same_credentials(acc, refused.rejected_credentials):
            raise refusal(acc, refused.taken_at, refused.error)
        cache = TokenCache(config.state_dir)
        respect_other_hosts_totp(engine, cache, [acc.user_id], clock())
        client = KiteClient(acc, config.kite, cache, clock=clock,
                            reserve_totp_step=step_reserver(engine, config.database_url,
                                                            acc.user_id, clock, lock))
        started = clock()
        t0 = time.perf_counter()
        try:
            return client.historical(token, start, end)
        except PermissionDenied as exc:
            plan = ("Kite Connect's Personal plan has no market data; "
                    if auth_for(acc).connect_api else "")
            raise BenchmarkUnavailable(
                f"account {acc.user_id}: Kite refused historical data ({exc.message}): "
                f"{plan}import the closes instead with `snapshotter benchmark import "
                "NAME FILE.csv` (NSE's index page exports them)") from None
        except LoginRejected as exc:
            _record_rejection(config, engine, acc, exc, started,
                              int((time.perf_counter() - t0) * 1000))
            raise
        finally:
            client.close()


def _record_rejection(config: Config, engine: sa.Engine, acc: AccountConfig,
                      exc: LoginRejected, taken_at: datetime, duration_ms: int) -> None:
    """The ledger's copy of a rejection, as a run keeps it (so that runs on every host
    refuse these credentials until they change or a person logs in)."""
    digest = credentials_digest(acc)
    if digest is None:  # a manual account: a person types the credentials
        return
    try:
        store.record_failure(
            engine, account=acc.user_id,
            snapshot_date=calendar_for(config).latest_opened(taken_at).day,
            taken_at=taken_at, error=redact.redact(f"benchmark fetch: {exc}"),
            duration_ms=duration_ms, rejected_credentials=digest)
    except sa.exc.SQLAlchemyError as db_exc:
        log.error("account %s: could not record the rejection in the ledger (%s)",
                  acc.user_id, store.error_kind(db_exc))
