"""`run --from-raw`: re-derive stored snapshots, and recover failed attempts, from
their raw payloads (offline)."""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date, datetime

import sqlalchemy as sa

from snapshotter import redact
from snapshotter.normalize import PayloadError, normalize_snapshot
from snapshotter.routes import ROUTES
from snapshotter.sessions import IST, TradingCalendar
from snapshotter.store import writes as store

log = logging.getLogger(__name__)

@dataclass
class ReplayResult:
    snapshots: int
    rows: int
    failures: list[str]


def replay_raw(engine: sa.Engine, accounts: Iterable[str] | None = None,
               calendar: TradingCalendar | None = None) -> ReplayResult:
    """Re-derive every stored snapshot's rows from its raw payloads (offline); then turn
    each failed attempt that kept every answer and now normalizes into the complete
    snapshot of its session, with its original taken_at (unless a complete snapshot of
    that session was taken later)."""
    snaps = store.snapshots_to_replay(engine, accounts)
    rows, failures = 0, []
    for snap in snaps:
        try:
            normalized = normalize_snapshot(store.raw_payloads(engine, snap.id), snap.account,
                                            snap.snapshot_date)
            rows += sum(store.replace_rows(engine, snap.id, normalized.tables,
                                           normalized.warnings).values())
        except (PayloadError, LookupError, store.StoreError, sa.exc.SQLAlchemyError) as exc:
            failures.append(f"account {snap.account} {snap.snapshot_date}: "
                            f"{_replay_error(exc)}")
    replayed = len(snaps) - len(failures)
    recovered, recovered_rows = _recover_failed_attempts(
        engine, accounts, calendar or TradingCalendar(), failures)
    return ReplayResult(replayed + recovered, rows + recovered_rows, failures)


# -- helpers of store_one and replay_raw -------------------------------------------------

def _replay_error(exc: BaseException) -> str:
    if isinstance(exc, sa.exc.SQLAlchemyError):
        if store.is_connection_error(exc):
            raise exc
        return f"database error ({store.error_kind(exc)})"
    return redact.redact(str(exc))


def _settled(calendar: TradingCalendar, day: date) -> datetime:
    """When the session of ``day`` settled (a regular one when the calendar has none)."""
    found = calendar.session(day) or TradingCalendar(extra_sessions=[day]).session(day)
    assert found is not None
    return found.settled


def _recover_failed_attempts(engine: sa.Engine, accounts: Iterable[str] | None,
                             calendar: TradingCalendar, failures: list[str]) -> tuple[int, int]:
    recovered = rows = 0
    for snap in store.failed_attempts_to_replay(engine, [r.name for r in ROUTES],
                                                  accounts):
        when = f"account {snap.account} {snap.snapshot_date}"
        try:
            normalized = normalize_snapshot(store.raw_payloads(engine, snap.id), snap.account,
                                            snap.snapshot_date)
        except PayloadError as exc:
            log.info("%s: the failed attempt of %s still does not normalize: %s", when,
                     snap.taken_at.astimezone(IST).strftime("%H:%M IST"), exc)
            continue
        try:
            stored = store.recover_failed(
                engine, snap.id, frames=normalized.tables, warnings=normalized.warnings,
                after_close=snap.taken_at >= _settled(calendar, snap.snapshot_date))
        except (LookupError, store.StoreError, sa.exc.SQLAlchemyError) as exc:
            failures.append(f"{when}: {_replay_error(exc)}")
            continue
        if stored is None:
            continue  # a complete snapshot of that session was taken later: it stays
        recovered += 1
        rows += sum(stored.counts.values())
        log.info("%s: recovered the failed attempt of %s from its raw payloads (%s)", when,
                 snap.taken_at.astimezone(IST).strftime("%H:%M IST"),
                 "final" if stored.final else "not final")
        for warning in stored.warnings:
            log.warning("%s", warning)
    return recovered, rows
