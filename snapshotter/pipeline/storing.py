"""Storing one account's answers: normalized and written in one transaction, recorded
failed with the answers it got, or spooled when the database is lost."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa

from snapshotter import redact
from snapshotter.config import AccountConfig, Config
from snapshotter.errors import (
    DatabaseUnavailable,
    KiteError,
    LockLost,
    LoginRejected,
    PayloadError,
    SnapshotterError,
)
from snapshotter.kite.auth import HELD, ReserveTotpStep, StepReservation
from snapshotter.kite.token_cache import rejection_advice
from snapshotter.pipeline.outcomes import (
    FAILED,
    OK,
    AccountOutcome,
    credentials_digest,
)
from snapshotter.private_files import StatePathError
from snapshotter.sessions import IST, Session
from snapshotter.store import engine as db
from snapshotter.store import spool, totp
from snapshotter.store import writes as store
from snapshotter.store.lock import HeldLock

if TYPE_CHECKING:
    from snapshotter.normalize import Normalized

log = logging.getLogger(__name__)


def normalize_snapshot(payloads: Any, account: str, day: date) -> Normalized:
    """``normalize.normalize_snapshot``, loaded when first used: pandas' import (a third
    of a second) then overlaps the network (``pipeline.run`` warms it up meanwhile)."""
    from snapshotter.normalize import normalize_snapshot as normalize

    return normalize(payloads, account, day)


@dataclass
class RunDatabase:
    """Whether the database was lost during this run (then answers go to the spool)."""

    url: str = ""
    lost: DatabaseUnavailable | None = None


def step_reserver(engine: sa.Engine, url: str, account: str, clock: Callable[[], datetime],
                  lock: HeldLock | None = None,
                  group: totp.GroupReservations | None = None) -> ReserveTotpStep:
    """The account's TOTP steps reserved in the database (store.totp) before each 2FA
    code is sent, the run lock checked first (``lock``); no login without either.
    ``group``: the run's, committing the reservations of logins at the same moment
    together."""
    holder = totp.this_process()

    def reserve(step: int) -> StepReservation:
        if lock is not None:
            lock.check()
        try:
            if group is not None:
                taken = group.reserve(account, step, clock())
            else:
                taken = totp.reserve_totp_step(engine, account, step, now=clock(),
                                               holder=holder)
        except sa.exc.SQLAlchemyError as exc:
            raise db.unavailable(exc, url) from None
        return HELD if taken is None else StepReservation(held=False, taken_through=taken)

    return reserve


def store_one(engine: sa.Engine, acc: AccountConfig, session: Session, taken_at: datetime,
               t0: float, future: Any, *, state_dir: Path, database: RunDatabase) -> AccountOutcome:
    """Normalize and store one account's answers, or record the failed attempt (with the
    answers it got). When the database is lost, the answers go to the spool."""
    user = acc.user_id
    final = taken_at >= session.settled
    payloads: dict[str, Any] | None = None
    failure: BaseException
    try:
        payloads, logins = future.result()
        if database.lost is not None:  # do not wait on a database already lost
            return _spool(acc, session, taken_at, final, payloads, t0, state_dir,
                          database.lost)
        normalized = normalize_snapshot(payloads, user, session.day)
        duration = int((time.perf_counter() - t0) * 1000)
        stored = store.store_snapshot(engine, account=user, snapshot_date=session.day,
                                      taken_at=taken_at, final=final, payloads=payloads,
                                      frames=normalized.tables, duration_ms=duration,
                                      warnings=normalized.warnings)
        return AccountOutcome(user, OK, session.day, final=stored.final, counts=stored.counts,
                              logins=logins, warnings=stored.warnings)
    except LockLost:
        # Not logged in: another run may be logging this account in now.
        return AccountOutcome(user, FAILED, session.day, transient=True,
                              error=f"account {user}: not logged in: this run lost its "
                                    "run lock")
    except DatabaseUnavailable as exc:  # the TOTP step could not be reserved: no login
        database.lost = database.lost or exc
        return AccountOutcome(user, FAILED, session.day, transient=True, spooled=True,
                              error=f"account {user}: not logged in: {exc}")
    except (PayloadError, store.StoreError) as exc:
        failure, error = exc, redact.redact(
            str(exc) if isinstance(exc, store.StoreError) else f"account {user}: {exc}")
    except (SnapshotterError, sa.exc.SQLAlchemyError) as exc:
        if store.is_connection_error(exc) and payloads is not None:
            database.lost = db.unavailable(exc, database.url)
            return _spool(acc, session, taken_at, final, payloads, t0, state_dir,
                          database.lost)
        failure, error = exc, _describe(exc, user)
    except Exception as exc:  # an account's bug must not stop the others
        log.error("account %s: unexpected %s (details with -v)", user, type(exc).__name__)
        log.debug("account %s: unexpected error", user, exc_info=True)
        failure, error = exc, _describe(exc, user)
    outcome = AccountOutcome(user, FAILED, session.day, error=error,
                             rejected=isinstance(failure, LoginRejected),
                             transient=isinstance(failure, KiteError) and failure.transient)
    duration = int((time.perf_counter() - t0) * 1000)
    answered = payloads if payloads is not None else getattr(failure, "partial_payloads", None)
    try:
        store.record_failure(engine, account=user, snapshot_date=session.day,
                             taken_at=taken_at, error=outcome.error or "", duration_ms=duration,
                             rejected_credentials=credentials_digest(acc)
                             if outcome.rejected else None,
                             payloads=_answers(answered))
    except sa.exc.SQLAlchemyError as exc:
        log.error("account %s: could not record the failure in the ledger (%s)", user,
                  store.error_kind(exc))
    return outcome


@dataclass(frozen=True)
class Ended:
    """An account whose fetch has ended: when it started, and its job's future."""

    account: AccountConfig
    taken_at: datetime
    t0: float
    future: Any


def store_ended(engine: sa.Engine, ended: list[Ended], session: Session, *,
                state_dir: Path, database: RunDatabase) -> list[AccountOutcome]:
    """The outcomes of accounts whose fetch ended, in ``ended``'s order. Those whose
    answers normalize are stored together (``store.store_snapshots``: one transaction);
    when the database refuses that batch, each is stored on its own (``store_one``), so
    a bad account fails alone and the others are kept; failed fetches, answers that do
    not normalize and a lost database take ``store_one``'s way too."""
    ready: list[tuple[Ended, store.NewSnapshot, int]] = []
    alone: list[Ended] = []
    normalized_all = _normalized(ended, session, database)
    for item, normalized in zip(ended, normalized_all, strict=True):
        if normalized is None:
            alone.append(item)
            continue
        payloads, logins, tables = normalized
        ready.append((item, store.NewSnapshot(
            item.account.user_id, session.day, item.taken_at,
            item.taken_at >= session.settled, payloads, tables.tables,
            int((time.perf_counter() - item.t0) * 1000), tables.warnings), logins))
    outcomes: dict[str, AccountOutcome] = {}
    if len(ready) > 1:
        try:
            stored = store.store_snapshots(engine, [new for _, new, _ in ready])
        except (store.StoreError, sa.exc.SQLAlchemyError) as exc:
            if isinstance(exc, sa.exc.SQLAlchemyError) and store.is_connection_error(exc):
                database.lost = database.lost or db.unavailable(exc, database.url)
            else:
                log.debug("a batch of %d snapshots was refused (%s): storing each on "
                          "its own", len(ready), store.error_kind(exc))
        else:
            for (item, _, logins), snap in zip(ready, stored, strict=True):
                outcomes[item.account.user_id] = AccountOutcome(
                    snap.account, OK, session.day, final=snap.final, counts=snap.counts,
                    logins=logins, warnings=snap.warnings)
            ready = []
    alone += [item for item, _, _ in ready]
    for item in alone:
        outcomes[item.account.user_id] = store_one(
            engine, item.account, session, item.taken_at, item.t0, item.future,
            state_dir=state_dir, database=database)
    return [outcomes[item.account.user_id] for item in ended]


def _normalized(ended: list[Ended], session: Session, database: RunDatabase) -> list[Any]:
    """(payloads, logins, normalize's answer) of each fetch that ended well and
    normalizes, all in one pass (``normalize_snapshots``); None where ``store_one``
    must decide (a failure, answers that do not normalize, a lost database)."""
    from snapshotter.normalize import normalize_snapshots

    answers: list[Any] = [None] * len(ended)
    if database.lost is not None:
        return answers
    fetched = [(index, *item.future.result()) for index, item in enumerate(ended)
               if item.future.exception() is None]
    try:
        normalized = normalize_snapshots(
            [(payloads, ended[index].account.user_id) for index, payloads, _ in fetched],
            session.day)
    except Exception:  # store_one normalizes again, and records the failure
        return answers
    for (index, payloads, logins), tables in zip(fetched, normalized, strict=True):
        if tables is not None:
            answers[index] = (payloads, logins, tables)
    return answers


def _spool(acc: AccountConfig, session: Session, taken_at: datetime, final: bool,
           payloads: dict[str, Any], t0: float, state_dir: Path,
           lost: DatabaseUnavailable) -> AccountOutcome:
    """The database cannot be written: keep the answers for the next run."""
    user = acc.user_id
    try:
        path = spool.save(state_dir, account=user, snapshot_date=session.day,
                          taken_at=taken_at, final=final, payloads=payloads,
                          duration_ms=int((time.perf_counter() - t0) * 1000))
    except (OSError, StatePathError) as exc:
        why = exc.strerror if isinstance(exc, OSError) else str(exc)
        error = (f"account {user}: {lost}; and the spool could not be written "
                 f"({why or type(exc).__name__}): this fetch is lost")
    else:
        error = (f"account {user}: {lost}; the answers are kept in {path} and stored by "
                 "the next run that reaches the database")
    return AccountOutcome(user, FAILED, session.day, error=redact.redact(error),
                          transient=True, spooled=True)


def store_spooled(config: Config, engine: sa.Engine) -> int:
    """Store the snapshots a run spooled while the database was lost, with their
    original taken_at and final flag (oldest first), before anything is fetched. A
    lost database again leaves the rest spooled (and raises)."""
    stored = 0
    for item in spool.pending(config.state_dir):
        current = store.complete_snapshots(engine, item.snapshot_date,
                                           [item.account]).get(item.account)
        if current is not None and current.taken_at >= item.taken_at:
            log.info("spool: %s has a newer snapshot of %s; dropping %s", item.account,
                     item.snapshot_date, item.path.name)
            spool.discard(item)
            continue
        try:
            normalized = normalize_snapshot(item.payloads, item.account, item.snapshot_date)
            store.store_snapshot(engine, account=item.account,
                                 snapshot_date=item.snapshot_date, taken_at=item.taken_at,
                                 final=item.final, payloads=item.payloads,
                                 frames=normalized.tables, duration_ms=item.duration_ms,
                                 warnings=normalized.warnings)
        except (PayloadError, store.StoreError) as exc:
            log.error("spool: %s", redact.redact(f"account {item.account}: {exc}"))
            store.record_failure(engine, account=item.account,
                                 snapshot_date=item.snapshot_date, taken_at=item.taken_at,
                                 error=redact.redact(f"account {item.account}: {exc}"),
                                 duration_ms=item.duration_ms,
                                 payloads=_answers(item.payloads))
        else:
            stored += 1
            log.info("stored the snapshot of %s for session %s fetched at %s, kept in %s",
                     item.account, item.snapshot_date,
                     item.taken_at.astimezone(IST).strftime("%Y-%m-%d %H:%M IST"), item.path)
        spool.discard(item)
    return stored


def _describe(exc: BaseException, account: str) -> str:
    if isinstance(exc, LoginRejected):
        text = str(exc)
        if exc.error_type in ("UserException", "TwoFAException", "InputException"):
            text += ("; not retried (Zerodha locks an account after 5 wrong 2FA entries): "
                     + rejection_advice(account, exc.keys or "password/totp_secret",
                                        exc.message))
    elif isinstance(exc, KiteError):
        text = str(exc)
    elif isinstance(exc, sa.exc.SQLAlchemyError):
        # Never the driver's text: it can quote the rows (and their data) it refused.
        text = f"account {account}: database error while storing ({store.error_kind(exc)})"
    else:
        text = f"account {account}: {type(exc).__name__}: {exc}"
    return redact.redact(text)


def _answers(payloads: Any) -> dict[str, Any] | None:
    """The routes that answered, as the ledger keeps them (None: no answer)."""
    if not isinstance(payloads, dict):
        return None
    return {name: body for name, body in payloads.items() if body is not None} or None
