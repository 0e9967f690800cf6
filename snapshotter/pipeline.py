"""The snapshot job: config -> kite client -> normalize -> store. CLI, daemon and timer call it."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Any

import sqlalchemy as sa

from snapshotter import redact, store
from snapshotter.config import AccountConfig, Config
from snapshotter.errors import KiteError, LoginRejected, SnapshotterError
from snapshotter.kite_client import TOTP_STEP, KiteClient
from snapshotter.locking import run_lock
from snapshotter.models import Snapshot
from snapshotter.normalize import PayloadError, normalize_all
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


@dataclass
class RunResult:
    session: Session
    outcomes: list[AccountOutcome]

    @property
    def exit_code(self) -> int:
        if any(o.rejected for o in self.outcomes):
            return LoginRejected.exit_code
        return 1 if any(o.status == FAILED for o in self.outcomes) else 0


def calendar_for(config: Config) -> TradingCalendar:
    return TradingCalendar(config.calendar.holidays, config.calendar.extra_sessions)


def select_accounts(config: Config, user_ids: Iterable[str] | None) -> list[AccountConfig]:
    if not user_ids:
        return list(config.accounts)
    return [config.account(u.strip().upper()) for u in user_ids]


def _fetch(account: AccountConfig, config: Config, cache: TokenCache,
           clock: Clock) -> tuple[dict[str, Any], int]:
    client = KiteClient(account, config.kite, cache, clock=clock)
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
) -> RunResult:
    """Snapshot every selected account for the latest session that has opened.

    Skips an account that has a final snapshot of that session (unless ``force``); with
    ``catch_up`` (the daemon) also one with a complete intraday snapshot while the session
    is still open. Runs under the database's run lock, and decides under it, so replicas
    sharing one database log in and snapshot once.
    """
    calendar = calendar or calendar_for(config)
    selected = select_accounts(config, accounts)
    outcomes: list[AccountOutcome] = []

    def report(outcome: AccountOutcome) -> None:
        outcomes.append(outcome)
        if on_outcome:
            on_outcome(outcome)

    with run_lock(config.database_url):
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
            _snapshot_accounts(config, engine, todo, session, clock, report, should_stop)
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


def _snapshot_accounts(config: Config, engine: sa.Engine, todo: list[AccountConfig],
                       session: Session, clock: Clock,
                       report: Callable[[AccountOutcome], None],
                       should_stop: Callable[[], bool]) -> None:
    cache = TokenCache(config.state_dir)
    _respect_other_hosts_totp(engine, cache, [a.user_id for a in todo], clock())
    workers = min(config.kite.concurrency, len(todo))
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="account") as pool:
        started: dict[str, tuple[datetime, float]] = {}

        def job(acc: AccountConfig) -> tuple[dict[str, Any], int] | None:
            if should_stop():
                return None  # shutting down: abandon accounts not yet started
            started[acc.user_id] = (clock(), time.perf_counter())
            return _fetch(acc, config, cache, clock)

        futures = {pool.submit(job, acc): acc for acc in todo}
        for future in as_completed(futures):
            acc = futures[future]
            if future.exception() is None and future.result() is None:
                log.info("account %s: abandoned (shutting down)", acc.user_id)
                continue
            taken_at, t0 = started.get(acc.user_id, (clock(), time.perf_counter()))
            report(_store_one(engine, acc, session, taken_at, t0, future))


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


def _store_one(engine: sa.Engine, acc: AccountConfig, session: Session, taken_at: datetime,
               t0: float, future: Any) -> AccountOutcome:
    user = acc.user_id
    final = taken_at >= session.settled
    try:
        payloads, logins = future.result()
        frames = normalize_all(payloads, user, session.day)
        duration = int((time.perf_counter() - t0) * 1000)
        stored = store.store_snapshot(engine, account=user, snapshot_date=session.day,
                                      taken_at=taken_at, final=final, payloads=payloads,
                                      frames=frames, duration_ms=duration)
        return AccountOutcome(user, OK, session.day, final=final, counts=stored.counts,
                              logins=logins)
    except (SnapshotterError, PayloadError, sa.exc.SQLAlchemyError) as exc:
        error = _describe(exc, user)
        outcome = AccountOutcome(user, FAILED, session.day, error=error,
                                 rejected=isinstance(exc, LoginRejected),
                                 transient=isinstance(exc, KiteError) and exc.transient)
    except Exception as exc:  # an account's bug must not stop the others
        log.error("account %s: unexpected %s (details with -v)", user, type(exc).__name__)
        log.debug("account %s: unexpected error", user, exc_info=True)
        outcome = AccountOutcome(user, FAILED, session.day, error=_describe(exc, user))
    duration = int((time.perf_counter() - t0) * 1000)
    try:
        store.record_failure(engine, account=user, snapshot_date=session.day,
                             taken_at=taken_at, error=outcome.error or "", duration_ms=duration,
                             rejected_credentials=credentials_digest(acc)
                             if outcome.rejected else None)
    except sa.exc.SQLAlchemyError as exc:
        log.error("account %s: could not record the failure: %s", user,
                  redact.redact(str(exc).splitlines()[0]))
    return outcome


def _describe(exc: BaseException, account: str) -> str:
    if isinstance(exc, LoginRejected):
        text = str(exc)
        if exc.error_type in ("UserException", "TwoFAException", "InputException"):
            text += ("; not retried (Zerodha locks an account after 5 wrong 2FA entries): "
                     + rejection_advice(account, "password/totp_secret", exc.message))
    elif isinstance(exc, KiteError):
        text = str(exc)
    elif isinstance(exc, sa.exc.SQLAlchemyError):
        text = f"account {account}: database error: {str(exc).splitlines()[0]}"
    else:
        text = f"account {account}: {type(exc).__name__}: {exc}"
    return redact.redact(text)


@dataclass
class ReplayResult:
    snapshots: int
    rows: int
    failures: list[str]


def replay_raw(engine: sa.Engine, accounts: Iterable[str] | None = None) -> ReplayResult:
    """Re-derive every stored snapshot's rows from its raw payloads (offline)."""
    snaps = store.snapshots_to_replay(engine, accounts)
    rows, failures = 0, []
    for snap in snaps:
        try:
            frames = normalize_all(store.raw_payloads(engine, snap.id), snap.account,
                                   snap.snapshot_date)
            rows += sum(store.replace_rows(engine, snap.id, frames).values())
        except (PayloadError, LookupError, sa.exc.SQLAlchemyError) as exc:
            failures.append(f"account {snap.account} {snap.snapshot_date}: {exc}")
    return ReplayResult(len(snaps) - len(failures), rows, failures)
