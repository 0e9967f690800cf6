"""One run: which session, which accounts, fetched concurrently under the run lock and
the run's deadline, stored as they end (those that ended together in one batch)."""

from __future__ import annotations

import contextlib
import importlib
import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable
from concurrent.futures import Executor, Future, ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa

from snapshotter import heap, redact
from snapshotter.cancel import INTERRUPTED, Cancel
from snapshotter.config import AccountConfig, Config
from snapshotter.errors import LockLost
from snapshotter.kite.auth import TOTP_STEP, refusal, same_credentials
from snapshotter.kite.client import KiteClient
from snapshotter.kite.http import Connections
from snapshotter.kite.token_cache import TokenCache
from snapshotter.pipeline.outcomes import (
    FAILED,
    OK,
    SKIPPED,
    AccountOutcome,
    Clock,
    RunResult,
)
from snapshotter.pipeline.storing import (
    Ended,
    RunDatabase,
    step_reserver,
    store_ended,
    store_spooled,
)
from snapshotter.routes import ROUTES
from snapshotter.sessions import IST, Session, TradingCalendar, calendar_for, utc_now
from snapshotter.store import lots_due
from snapshotter.store import writes as store
from snapshotter.store.lock import HeldLock, run_lock
from snapshotter.store.models import Snapshot
from snapshotter.store.totp import GroupReservations, this_process

log = logging.getLogger(__name__)

def select_accounts(config: Config, user_ids: Iterable[str] | None) -> list[AccountConfig]:
    if not user_ids:
        return list(config.accounts)
    return [config.account(u.strip().upper()) for u in user_ids]


def _fetch(account: AccountConfig, config: Config, cache: TokenCache, clock: Clock,
           engine: sa.Engine, lock: HeldLock, cancel: Cancel | None = None,
           route_pool: Executor | None = None,
           connections: Connections | None = None,
           reservations: GroupReservations | None = None) -> tuple[dict[str, Any], int]:
    client = KiteClient(account, config.kite, cache, clock=clock, cancel=cancel,
                        reserve_totp_step=step_reserver(engine, config.database_url,
                                                        account.user_id, clock, lock,
                                                        reservations),
                        route_pool=route_pool, shared_connections=connections)
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
    # Every run checks the state directory (private, no symlinks), work or not.
    TokenCache(config.state_dir)
    outcomes: list[AccountOutcome] = []

    def report(outcome: AccountOutcome) -> None:
        outcomes.append(outcome)
        if on_outcome:
            on_outcome(outcome)

    def waiting_for_lock() -> None:
        tick()
        cancel.check()

    with run_lock(config.database_url, deadline=deadline, on_wait=waiting_for_lock) as lock:
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
                                      counts=done.counts()))
            else:
                todo.append(acc)
        todo = _without_rejected_credentials(engine, todo, session, report)
        database = RunDatabase(config.database_url)
        if todo:
            _Run(config, engine, session, clock, report, cancel, deadline, tick,
                 should_stop, database, lock).snapshot_accounts(todo)
        # A new snapshot can show a split or bonus: the FIFO lots of the accounts that
        # have imported trades are rebuilt (pipeline.imports), under the lock; so are
        # those an import left waiting.
        if database.lost is None and lock.lost is None:
            due = lots_due.after_run(engine, [o.account for o in outcomes if o.status == OK],
                                     [o.account for o in outcomes if o.status != OK])
            if due:  # the import code (pandas' Console parsing...) loads only then
                from snapshotter.pipeline.imports import rebuild_accounts

                heap.loaded()  # collection on for the rebuild, if no fetch turned it on
                rebuild_accounts(engine, due)
    return RunResult(session, outcomes, lock_lost=str(lock.lost) if lock.lost else None)


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
        if snap is not None and same_credentials(acc, snap.rejected_credentials):
            report(AccountOutcome(acc.user_id, FAILED, session.day, rejected=True,
                                  error=str(refusal(acc, snap.taken_at, snap.error))))
        else:
            keep.append(acc)
    return keep


RUN_DEADLINE = "run deadline"
SHUTTING_DOWN = "abandoned: the daemon is shutting down"
POLL_SECONDS = 0.02  # the wait for the next account to end (a poll: see _Run)
# Accounts that ended are stored together once this many have, or the first of them
# ended this long ago, or none is still being fetched: a batch's statements and commit
# cost about as much as a few accounts' rows. Once every account has started, what has
# ended is stored at each poll: the last ones' network waits then hide the others'
# stores, and the run ends sooner after its last answer (docs/speed.md).
BATCH_ACCOUNTS = 64
BATCH_WAIT = 0.5
# After cancelling, how long requests in flight get to notice before their accounts are
# recorded failed without them (their sockets are shut down at once, so this is slack).
CANCEL_GRACE = 5.0


@dataclass
class _Run:
    """One run's account snapshots: fetched concurrently, stored here as they end (in
    batches: see BATCH_ACCOUNTS), all ended by the run's deadline. Polls with
    time.sleep (no timed thread waits: libfaketime would freeze them)."""

    config: Config
    engine: sa.Engine
    session: Session
    clock: Clock
    report: Callable[[AccountOutcome], None]
    cancel: Cancel
    deadline: float
    tick: Callable[[], None]
    should_stop: Callable[[], bool]
    database: RunDatabase
    lock: HeldLock

    def _lock_held(self) -> bool:
        """Checked before each login and each store: once the lock is lost, another run
        may be logging in, so this one starts no more accounts."""
        try:
            self.lock.check()
        except LockLost:
            return False
        return True

    def snapshot_accounts(self, todo: list[AccountConfig]) -> None:
        config, cancel = self.config, self.cancel
        loader = threading.Thread(target=_load_normalize, name="load-normalize")
        loader.start()
        cache = TokenCache(config.state_dir)
        respect_other_hosts_totp(self.engine, cache, [a.user_id for a in todo], self.clock())
        started: dict[str, tuple[datetime, float]] = {}

        def job(acc: AccountConfig) -> tuple[dict[str, Any], int] | None:
            if cancel.is_set() or self.should_stop() or self.database.lost \
                    or not self._lock_held():
                return None  # never started
            started[acc.user_id] = (self.clock(), time.perf_counter())
            return _fetch(acc, config, cache, self.clock, self.engine, self.lock, cancel,
                          routes, connections, reservations)

        workers = min(config.kite.concurrency, len(todo))
        pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="account")
        # Every fetching account's data routes at once, on threads the accounts share.
        routes = ThreadPoolExecutor(max_workers=workers * len(ROUTES),
                                    thread_name_prefix="route")
        connections = Connections(maxsize=workers * len(ROUTES))
        reservations = GroupReservations(self.engine, this_process())
        pending = {pool.submit(job, acc): acc for acc in todo}
        # Each job's future as it ends (appended by its thread): no scan of every
        # pending future at each poll.
        ending: deque[Future[Any]] = deque()
        for future in pending:
            future.add_done_callback(ending.append)
        done: list[Future[Any]] = []  # ended, not stored yet
        cancelled_at: float | None = None
        ended_since: float | None = None  # when the oldest unstored account ended
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
                while ending:
                    done.append(ending.popleft())
                if done and ended_since is None:
                    ended_since = now
                if not done or not (len(done) == len(pending) or len(done) >= BATCH_ACCOUNTS
                                    or now - (ended_since or now) >= BATCH_WAIT
                                    or len(started) == len(todo) or cancel.is_set()):
                    if cancelled_at is not None and now - cancelled_at >= CANCEL_GRACE:
                        break
                    time.sleep(POLL_SECONDS)
                    continue
                ended_since = None
                batch, done = done, []
                self._ended(batch, pending, started)
        except KeyboardInterrupt:
            self._interrupted(pending, started)
            raise
        finally:
            for acc in pending.values():  # still stuck after the grace period
                self._gave_up(acc, started.get(acc.user_id))
            pool.shutdown(wait=not pending, cancel_futures=True)
            routes.shutdown(wait=not pending, cancel_futures=True)
            if not pending:
                connections.close()
            loader.join()

    def _ended(self, futures: list[Future[Any]], pending: dict[Future[Any], AccountConfig],
               started: dict[str, tuple[datetime, float]]) -> None:
        """Store (or record the failure of) the accounts whose jobs have ended, together
        (one transaction: ``storing.store_ended``); they leave ``pending`` once recorded,
        so an interrupt while storing records them again."""
        ended = []
        for future in futures:
            acc = pending[future]
            if future.exception() is None and future.result() is None:
                self._not_started(acc)
                del pending[future]
            else:
                taken_at, t0 = started.get(acc.user_id, (self.clock(), time.perf_counter()))
                ended.append((future, Ended(acc, taken_at, t0, future)))
        if not ended:
            return
        self._lock_held()  # a lost lock stops the logins; these answers are kept
        for outcome in store_ended(self.engine, [e for _, e in ended], self.session,
                                   state_dir=self.config.state_dir, database=self.database):
            self.report(outcome)
        for future, _ in ended:
            del pending[future]

    def _interrupted(self, pending: dict[Future[Any], AccountConfig],
                     started: dict[str, tuple[datetime, float]]) -> None:
        """Ctrl-C: no request starts any more (requests in flight are abandoned, so no
        login goes on after it); what has ended is stored, every unfinished account is
        recorded "interrupted". A second Ctrl-C stops the wait."""
        log.warning("interrupted: abandoning %d unfinished account(s)", len(pending))
        self.cancel.cancel(INTERRUPTED)
        grace_ends = time.monotonic() + CANCEL_GRACE
        while pending and time.monotonic() < grace_ends:
            self._ended([f for f in pending if f.done()], pending, started)
            if pending:
                time.sleep(POLL_SECONDS)

    def _not_started(self, acc: AccountConfig) -> None:
        if self.lock.lost:
            self.report(AccountOutcome(
                acc.user_id, FAILED, self.session.day, transient=True,
                error=f"account {acc.user_id}: not fetched: this run lost its run lock"))
            return
        if self.database.lost:
            # Not logged in: each web login also ends the user's browser session.
            self.report(AccountOutcome(
                acc.user_id, FAILED, self.session.day, transient=True, spooled=True,
                error=f"account {acc.user_id}: not fetched: the database was lost during "
                      "this run"))
            return
        reason = self.cancel.reason or ""
        if not reason.startswith((RUN_DEADLINE, INTERRUPTED)):
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


def _load_normalize() -> None:
    """Import normalize (pandas, a third of a second of CPU) while the logins wait on
    the network, not after the answers came; a failure is the storing's to report."""
    with contextlib.suppress(Exception):
        importlib.import_module("snapshotter.normalize")
    heap.loaded()  # pandas' objects too, in the `snapshotter run` process


def respect_other_hosts_totp(engine: sa.Engine, cache: TokenCache, accounts: list[str],
                              now: datetime) -> None:
    """Replicas share the ledger, not the token cache: treat the TOTP steps of attempts
    another host began in the last minutes (which may have logged in) as used here too."""
    query = sa.select(Snapshot.account, Snapshot.taken_at, Snapshot.duration_ms).where(
        Snapshot.account.in_(accounts), Snapshot.taken_at >= now - timedelta(minutes=2))
    with engine.connect() as conn:
        recent = conn.execute(query).all()
    latest: dict[str, int] = {}
    for account, taken_at, duration_ms in recent:
        step = int(taken_at.timestamp() + (duration_ms or 0) / 1000) // TOTP_STEP
        latest[account] = max(step, latest.get(account, 0))
    for account, step in latest.items():
        entry = cache.load(account)
        if step > entry.last_totp_step:
            entry.last_totp_step = step
            cache.save(account, entry)
