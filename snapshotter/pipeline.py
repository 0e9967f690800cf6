"""The snapshot job: config -> kite client -> normalize -> store. CLI, daemon and timer call it."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from snapshotter import db, redact, spool, store
from snapshotter.cancel import Cancel
from snapshotter.config import AccountConfig, Config
from snapshotter.errors import DatabaseUnavailable, KiteError, LoginRejected, SnapshotterError
from snapshotter.kite_client import TOTP_STEP, KiteClient
from snapshotter.locking import run_lock
from snapshotter.models import Snapshot
from snapshotter.normalize import NORMALIZERS, PayloadError, normalize_snapshot
from snapshotter.private_files import StatePathError
from snapshotter.sessions import IST, Session, TradingCalendar, utc_now
from snapshotter.token_cache import TokenCache, credentials_fingerprint, rejection_advice

log = logging.getLogger(__name__)

Clock = Callable[[], datetime]

OK, FAILED, SKIPPED = "ok", "failed", "skipped"


@dataclass
class AccountOutcome:
    account: str
    status: str
    snapshot_date: date
    final: bool = False
    counts: dict[str, int] = field(default_factory=dict)
    error: str | None = None
    rejected: bool = False  # Kite refused the credentials: never retry automatically
    transient: bool = False
    logins: int = 0
    warnings: tuple[str, ...] = ()  # answers that parse but look wrong (ledger: warnings)
    spooled: bool = False  # the database was lost: kept in the state dir's spool


@dataclass
class RunResult:
    session: Session
    outcomes: list[AccountOutcome]

    @property
    def exit_code(self) -> int:
        if any(o.rejected for o in self.outcomes):
            return LoginRejected.exit_code
        if any(o.spooled for o in self.outcomes):
            return DatabaseUnavailable.exit_code
        return 1 if any(o.status == FAILED for o in self.outcomes) else 0


def calendar_for(config: Config) -> TradingCalendar:
    return TradingCalendar(config.calendar.holidays, config.calendar.extra_sessions)


def select_accounts(config: Config, user_ids: Iterable[str] | None) -> list[AccountConfig]:
    if not user_ids:
        return list(config.accounts)
    return [config.account(u.strip().upper()) for u in user_ids]


def _fetch(account: AccountConfig, config: Config, cache: TokenCache,
           clock: Clock, cancel: Cancel | None = None) -> tuple[dict[str, Any], int]:
    client = KiteClient(account, config.kite, cache, clock=clock, cancel=cancel)
    try:
        return client.fetch_all(), client.logins
    finally:
        client.close()


def run_snapshot(
    config: Config,
    engine: sa.Engine,
    *,
    accounts: Iterable[str] | None = None,
    force: bool = False,
    catch_up: bool = False,
    clock: Clock = utc_now,
    calendar: TradingCalendar | None = None,
    on_outcome: Callable[[AccountOutcome], None] | None = None,
    should_stop: Callable[[], bool] = lambda: False,
    cancel: Cancel | None = None,
    deadline: float | None = None,
    on_progress: Callable[[], None] | None = None,
) -> RunResult:
    """Snapshot every selected account for the latest session that has opened.

    Skips an account that has a final snapshot of that session (unless ``force``); with
    ``catch_up`` (the daemon) also one with a complete intraday snapshot while the session
    is still open. Runs under the database's run lock, and decides under it, so replicas
    sharing one database log in and snapshot once. The whole run, waiting for the lock
    included, ends by the monotonic ``deadline`` (default: now + kite.run_timeout).
    The daemon's shutdown sets ``should_stop`` (no account starts any more), then, if
    that is not enough, ``cancel`` (requests in flight are abandoned). ``on_progress`` is
    called while the run is alive and not stuck (the daemon's watchdog).
    """
    calendar = calendar or calendar_for(config)
    cancel = cancel or Cancel()
    if deadline is None:
        deadline = time.monotonic() + config.kite.run_timeout
    tick = on_progress or (lambda: None)
    selected = select_accounts(config, accounts)
    outcomes: list[AccountOutcome] = []

    def report(outcome: AccountOutcome) -> None:
        outcomes.append(outcome)
        if on_outcome:
            on_outcome(outcome)

    def waiting_for_lock() -> None:
        tick()
        cancel.check()

    with run_lock(config.database_url, deadline=deadline, on_wait=waiting_for_lock):
        tick()
        store_spooled(config, engine)
        now = clock()
        calendar.warn_once(now.astimezone(IST).date())
        session = calendar.latest_opened(now)
        closed = now >= session.settled
        existing = store.complete_snapshots(engine, session.day, [a.user_id for a in selected])
        todo = []
        for acc in selected:
            done = existing.get(acc.user_id)
            if done is not None and not force and (done.final or (catch_up and not closed)):
                report(AccountOutcome(acc.user_id, SKIPPED, session.day, final=done.final,
                                      counts=_counts(done)))
            else:
                todo.append(acc)
        todo = _without_rejected_credentials(engine, todo, session, report)
        if todo:
            run = _Run(config, engine, session, clock, report, cancel, deadline, tick,
                       should_stop, _Database(config.database_url))
            run.snapshot_accounts(todo)
    return RunResult(session, outcomes)


def credentials_digest(acc: AccountConfig) -> str | None:
    """The same digest of an account's credentials on every host, kept in the ledger when
    Kite rejects them. None for manual accounts (a person types them) and without a TOTP
    or API secret, whose entropy is what keeps the digest from being guessed back."""
    if acc.auth == "manual" or not (acc.totp_secret or acc.api_secret):
        return None
    return credentials_fingerprint(f"kite-snapshotter:{acc.user_id}", acc.password,
                                   acc.totp_secret, acc.api_secret, acc.api_key)


def _without_rejected_credentials(engine: sa.Engine, todo: list[AccountConfig],
                                  session: Session,
                                  report: Callable[[AccountOutcome], None],
                                  ) -> list[AccountConfig]:
    """Accounts whose latest attempt, on any host, was Kite rejecting these very
    credentials are not tried again (Zerodha locks an account after 5 wrong 2FA)."""
    refused = store.rejected_credentials(engine, [a.user_id for a in todo])
    keep = []
    for acc in todo:
        snap = refused.get(acc.user_id)
        if snap is not None and snap.rejected_credentials == credentials_digest(acc):
            when = snap.taken_at.astimezone(IST).strftime("%Y-%m-%d %H:%M IST")
            keys = "password/totp_secret" + (
                "/api_key/api_secret" if acc.auth == "connect" else "")
            advice = rejection_advice(acc.user_id, keys, snap.error)
            report(AccountOutcome(acc.user_id, FAILED, session.day, rejected=True, error=(
                f"account {acc.user_id}: Kite rejected these credentials at {when}; not "
                f"trying again to avoid locking the account: {advice}")))
        else:
            keep.append(acc)
    return keep


def _counts(snap: Snapshot) -> dict[str, int]:
    return {"holdings": snap.holdings_count, "positions": snap.positions_count,
            "funds": snap.funds_count, "mf_holdings": snap.mf_holdings_count}


RUN_DEADLINE = "run deadline"
SHUTTING_DOWN = "abandoned: the daemon is shutting down"
POLL_SECONDS = 0.1
# After cancelling, how long requests in flight get to notice before their accounts are
# recorded failed without them (their sockets are shut down at once, so this is slack).
CANCEL_GRACE = 5.0


@dataclass
class _Run:
    """One run's account snapshots: fetched concurrently, stored here as each ends,
    all ended by the run's deadline. Polls with time.sleep (no timed thread waits:
    libfaketime would freeze them)."""

    config: Config
    engine: sa.Engine
    session: Session
    clock: Clock
    report: Callable[[AccountOutcome], None]
    cancel: Cancel
    deadline: float
    tick: Callable[[], None]
    should_stop: Callable[[], bool]
    database: _Database

    def snapshot_accounts(self, todo: list[AccountConfig]) -> None:
        config, cancel = self.config, self.cancel
        cache = TokenCache(config.state_dir)
        _respect_other_hosts_totp(self.engine, cache, [a.user_id for a in todo], self.clock())
        started: dict[str, tuple[datetime, float]] = {}

        def job(acc: AccountConfig) -> tuple[dict[str, Any], int] | None:
            if cancel.is_set() or self.should_stop() or self.database.lost:
                return None  # never started
            started[acc.user_id] = (self.clock(), time.perf_counter())
            return _fetch(acc, config, cache, self.clock, cancel)

        pool = ThreadPoolExecutor(max_workers=min(config.kite.concurrency, len(todo)),
                                  thread_name_prefix="account")
        pending = {pool.submit(job, acc): acc for acc in todo}
        cancelled_at: float | None = None
        try:
            while pending:
                self.tick()
                now = time.monotonic()
                if not cancel.is_set() and now >= self.deadline:
                    log.error("run deadline: kite.run_timeout (%.0fs) reached with %d "
                              "account(s) unfinished", config.kite.run_timeout, len(pending))
                    cancel.cancel(f"{RUN_DEADLINE}: not finished within kite.run_timeout "
                                  f"({config.kite.run_timeout:.0f}s)")
                if cancel.is_set() and cancelled_at is None:
                    cancelled_at = now
                done = [f for f in pending if f.done()]
                if not done:
                    if cancelled_at is not None and now - cancelled_at >= CANCEL_GRACE:
                        break
                    time.sleep(POLL_SECONDS)
                    continue
                for future in done:
                    acc = pending.pop(future)
                    if future.exception() is None and future.result() is None:
                        self._not_started(acc)
                        continue
                    taken_at, t0 = started.get(acc.user_id, (self.clock(), time.perf_counter()))
                    self.report(_store_one(self.engine, acc, self.session, taken_at, t0,
                                           future, state_dir=config.state_dir,
                                           database=self.database))
        finally:
            for acc in pending.values():  # still stuck after the grace period
                self._gave_up(acc, started.get(acc.user_id))
            pool.shutdown(wait=not pending, cancel_futures=True)

    def _not_started(self, acc: AccountConfig) -> None:
        if self.database.lost:
            # Not logged in: each web login also ends the user's browser session.
            self.report(AccountOutcome(
                acc.user_id, FAILED, self.session.day, transient=True, spooled=True,
                error=f"account {acc.user_id}: not fetched: the database was lost during "
                      "this run"))
            return
        reason = self.cancel.reason or ""
        if not reason.startswith(RUN_DEADLINE):
            log.info("account %s: abandoned (shutting down)", acc.user_id)
            return
        self._gave_up(acc, None)

    def _gave_up(self, acc: AccountConfig, started: tuple[datetime, float] | None) -> None:
        error = f"account {acc.user_id}: {self.cancel.reason or RUN_DEADLINE}"
        taken_at, t0 = started or (self.clock(), time.perf_counter())
        outcome = AccountOutcome(acc.user_id, FAILED, self.session.day, error=error,
                                 transient=True)
        try:
            store.record_failure(self.engine, account=acc.user_id,
                                 snapshot_date=self.session.day, taken_at=taken_at,
                                 error=error,
                                 duration_ms=int((time.perf_counter() - t0) * 1000))
        except sa.exc.SQLAlchemyError as exc:
            log.error("account %s: could not record the failure: %s", acc.user_id,
                      redact.redact(str(exc).splitlines()[0]))
        self.report(outcome)


def _respect_other_hosts_totp(engine: sa.Engine, cache: TokenCache, accounts: list[str],
                              now: datetime) -> None:
    """Replicas share the ledger, not the token cache: treat the TOTP steps of attempts
    another host began in the last minutes (which may have logged in) as used here too."""
    query = sa.select(Snapshot.account, Snapshot.taken_at, Snapshot.duration_ms).where(
        Snapshot.account.in_(accounts), Snapshot.taken_at >= now - timedelta(minutes=2))
    with engine.connect() as conn:
        recent = conn.execute(query).all()
    for account, taken_at, duration_ms in recent:
        step = int(taken_at.timestamp() + (duration_ms or 0) / 1000) // TOTP_STEP
        if step > cache.load(account).last_totp_step:
            cache.update(account, last_totp_step=step)


@dataclass
class _Database:
    """Whether the database was lost during this run (then answers go to the spool)."""

    url: str = ""
    lost: DatabaseUnavailable | None = None


def _store_one(engine: sa.Engine, acc: AccountConfig, session: Session, taken_at: datetime,
               t0: float, future: Any, *, state_dir: Path, database: _Database) -> AccountOutcome:
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
                                      frames=normalized.frames, duration_ms=duration,
                                      warnings=normalized.warnings)
        return AccountOutcome(user, OK, session.day, final=stored.final, counts=stored.counts,
                              logins=logins, warnings=stored.warnings)
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
                                 frames=normalized.frames, duration_ms=item.duration_ms,
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
                     + rejection_advice(account, "password/totp_secret", exc.message))
    elif isinstance(exc, KiteError):
        text = str(exc)
    elif isinstance(exc, sa.exc.SQLAlchemyError):
        # Never the driver's text: it can quote the rows (and their data) it refused.
        text = f"account {account}: database error while storing ({store.error_kind(exc)})"
    else:
        text = f"account {account}: {type(exc).__name__}: {exc}"
    return redact.redact(text)


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
            rows += sum(store.replace_rows(engine, snap.id, normalized.frames,
                                           normalized.warnings).values())
        except (PayloadError, LookupError, store.StoreError, sa.exc.SQLAlchemyError) as exc:
            failures.append(f"account {snap.account} {snap.snapshot_date}: "
                            f"{_replay_error(exc)}")
    replayed = len(snaps) - len(failures)
    recovered, recovered_rows = _recover_failed_attempts(
        engine, accounts, calendar or TradingCalendar(), failures)
    return ReplayResult(replayed + recovered, rows + recovered_rows, failures)


# -- helpers of _store_one and replay_raw -------------------------------------------------

def _answers(payloads: Any) -> dict[str, Any] | None:
    """The routes that answered, as the ledger keeps them (None: no answer)."""
    if not isinstance(payloads, dict):
        return None
    return {name: body for name, body in payloads.items() if body is not None} or None


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
    for snap in store.failed_attempts_to_replay(engine, NORMALIZERS, accounts):
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
                engine, snap.id, frames=normalized.frames, warnings=normalized.warnings,
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
