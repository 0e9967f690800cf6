"""`snapshotter daemon`: APScheduler 3 wrapped around the one-shot job.

The scheduler holds no logic of its own: each firing calls pipeline.run_snapshot.
Catch-up is ours (APScheduler's job store silently drops runs missed while the daemon
was down): on start, and after the machine slept, the daemon snapshots every account
that lacks a complete snapshot of the latest session (or a final one once it closed).
"""

from __future__ import annotations

import logging
import os
import signal
import threading
from collections.abc import Callable
from datetime import datetime, time, timedelta
from time import monotonic as _monotonic
from types import FrameType
from typing import Any

import sqlalchemy as sa
from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.triggers.base import BaseTrigger
from apscheduler.triggers.date import DateTrigger
from apscheduler.triggers.interval import IntervalTrigger

from snapshotter import pipeline, redact
from snapshotter.cancel import Cancel
from snapshotter.config import Config
from snapshotter.errors import SnapshotterError
from snapshotter.ops import health, notify
from snapshotter.sessions import (
    IST,
    SETTLE_MARGIN,
    TradingCalendar,
    next_fire_time,
    utc_now,
)
from snapshotter.store import engine as db
from snapshotter.store import writes as store

log = logging.getLogger(__name__)

Clock = Callable[[], datetime]

MISFIRE_GRACE = 6 * 3600  # seconds: a late run still runs (APScheduler's default is 1 s)
HEARTBEAT_SECONDS = 60
SLEEP_GAP = timedelta(minutes=3)  # a heartbeat this late means the machine slept
LOGIN_CHECK_BEFORE_CLOSE = timedelta(hours=1)  # auth: manual accounts' session check
STALL_SECONDS = 120.0  # a run this long without progress is stuck (without a watchdog)
STOP_GRACE = 5.0  # seconds in-flight snapshots get to finish after SIGTERM
STOP_ABANDON = 3.0  # then seconds to record the abandoned ones; under 10 s in all


class SessionTrigger(BaseTrigger):
    """APScheduler's view of ``sessions.next_fire_time``: once per NSE session."""

    def __init__(self, calendar: TradingCalendar, run_time: time, tz: Any = IST,
                 before_close: timedelta | None = None):
        self.calendar = calendar
        self.run_time = run_time
        self.tz = tz
        self.before_close = before_close  # fire this long before each close instead

    def get_next_fire_time(self, previous_fire_time: datetime | None,
                           now: datetime) -> datetime | None:
        earliest = previous_fire_time + timedelta(microseconds=1) if previous_fire_time \
            else now
        return next_fire_time(self.calendar, self.run_time, earliest, self.tz,
                              before_close=self.before_close)

    def __str__(self) -> str:
        return f"NSE sessions at {self.run_time:%H:%M} (or close + {SETTLE_MARGIN})"


class ReminderTrigger(BaseTrigger):
    """``schedule.login_reminder``: that time of day on each NSE session day."""

    def __init__(self, calendar: TradingCalendar, at: time, tz: Any = IST):
        self.calendar, self.at, self.tz = calendar, at, tz

    def get_next_fire_time(self, previous_fire_time: datetime | None,
                           now: datetime) -> datetime | None:
        earliest = previous_fire_time + timedelta(microseconds=1) if previous_fire_time \
            else now
        day = earliest.astimezone(self.tz).date()
        for _ in range(400):
            when = datetime.combine(day, self.at, tzinfo=self.tz)
            if when >= earliest and self.calendar.session(day) is not None:
                return when
            day += timedelta(days=1)
        return None

    def __str__(self) -> str:
        return f"NSE session days at {self.at:%H:%M}"


class Daemon:
    def __init__(self, config: Config, engine: sa.Engine, *, clock: Clock = utc_now,
                 scheduler: BackgroundScheduler | None = None):
        self.config = config
        self.engine = engine
        self.clock = clock
        self.calendar = pipeline.calendar_for(config)
        self.scheduler = scheduler or BackgroundScheduler(timezone=IST)
        self.stopping = threading.Event()
        self._last_beat: datetime | None = None
        self._run_lock = threading.Lock()
        self.runs: list[pipeline.RunResult] = []
        self._cancel: Cancel | None = None
        self._job_started: float | None = None  # monotonic, while a run is in progress
        self._last_progress = _monotonic()
        self._stalled = False

    # -- jobs ----------------------------------------------------------------------------

    def take_due(self, accounts: list[str] | None = None, attempt: int = 0,
                 reason: str = "scheduled") -> pipeline.RunResult | None:
        """Snapshot the accounts that need it now; schedule retries of transient failures."""
        if self.stopping.is_set():
            return None
        with self._run_lock:
            if self.stopping.is_set():
                return None
            self._cancel = Cancel()
            self._job_started = self._last_progress = _monotonic()
            result: pipeline.RunResult | None = None
            failure: notify.Message | None = None
            try:
                result = pipeline.run_snapshot(
                    self.config, self.engine, accounts=accounts, catch_up=True,
                    clock=self.clock, calendar=self.calendar,
                    should_stop=self.stopping.is_set, cancel=self._cancel,
                    on_progress=self._progress, on_outcome=self._log_outcome)
            except (SnapshotterError, sa.exc.SQLAlchemyError) as exc:
                failure = self._run_failed(exc, accounts, attempt, reason)
            finally:
                self._job_started = None
        if result is None:
            self._notify(failure)  # outside the run lock: a shutdown never waits for it
            return None
        self.runs.append(result)
        self._after_run(result, attempt, reason)
        return result

    def _run_failed(self, exc: Exception, accounts: list[str] | None, attempt: int,
                    reason: str) -> notify.Message | None:
        """The whole run failed (database unreachable, another run's lock held too
        long): one line, the failure ping, a retry like a transient failure, and the
        message to send about it."""
        if isinstance(exc, sa.exc.SQLAlchemyError):
            exc = db.unavailable(exc, self.config.database_url) \
                if db.is_connection_error(exc) else SnapshotterError(
                    f"database error ({type(exc).__name__})")
        message = redact.redact(str(exc))
        log.error("run failed (%s): %s", reason, message)
        health.ping(self.config.healthcheck_url, ok=False, message=f"{reason}: {message}")
        retry = self._schedule_retry(accounts, attempt, "run", "the failed run")
        return notify.failed_run_message(message, self.config.notify.on,
                                         what=f"the {reason} run", note=retry)

    def _log_outcome(self, o: pipeline.AccountOutcome) -> None:
        counts = " ".join(f"{k}={v}" for k, v in o.counts.items())
        fields = {"account": o.account, "session": o.snapshot_date.isoformat(),
                  "status": o.status, "final": o.final, **o.counts}
        if o.status == pipeline.FAILED:
            fields["error"] = o.error
            log.error("run account=%s session=%s status=failed error=%s", o.account,
                      o.snapshot_date, o.error, extra={"fields": fields})
        else:
            log.info("run account=%s session=%s status=%s final=%s %s", o.account,
                     o.snapshot_date, o.status, o.final, counts, extra={"fields": fields})

    def _after_run(self, result: pipeline.RunResult, attempt: int, reason: str) -> None:
        failed = [o for o in result.outcomes if o.status == pipeline.FAILED]
        retry = [o.account for o in failed if o.transient]
        rejected = [o.account for o in failed if o.rejected]
        if rejected:
            log.error("login rejected for %s: not retried; fix the config and restart",
                      ", ".join(rejected))
        permanent = [o.account for o in failed if not o.transient and not o.rejected]
        if permanent:
            log.error("%s failed for a reason retrying will not fix; see the errors above",
                      ", ".join(permanent))
        summary = ", ".join(f"{o.account}={o.status}" for o in result.outcomes)
        health.ping(self.config.healthcheck_url, ok=not failed,
                    message=f"session {result.session.day} ({reason}): {summary}")
        health.sd_notify(f"STATUS=last run {result.session.day}: {summary}")
        note = ""
        if retry:
            day = result.session.day
            note = self._schedule_retry(retry, attempt, str(day), f"session {day}")
        self._confirm_warnings(result, attempt)
        self._notify(notify.run_message(result, self.config.notify.on, note=note))

    def _notify(self, message: notify.Message | None) -> None:
        """Not while shutting down: the runs it abandoned are caught up on the next start."""
        if not self.stopping.is_set():
            notify.send(self.config.notify, message, should_stop=self.stopping.is_set)

    def _schedule_retry(self, accounts: list[str] | None, attempt: int, key: str,
                        what: str) -> str:
        """Schedules the retry, or gives up; says which (for the notification)."""
        limit = self.config.schedule.retry_attempts
        names = ", ".join(accounts) if accounts else "every account"
        if attempt < limit and not self.stopping.is_set():
            when = self.clock() + timedelta(minutes=self.config.schedule.retry_spacing_minutes)
            said = (f"retrying {names} at {when.astimezone(IST):%H:%M} IST (attempt "
                    f"{attempt + 1} of {limit})")
            log.info("%s", said)
            self.scheduler.add_job(
                self.take_due, DateTrigger(when), kwargs={
                    "accounts": accounts, "attempt": attempt + 1, "reason": "retry"},
                id=f"retry-{key}-{attempt + 1}-{'-'.join(accounts or ['all'])}",
                replace_existing=True,
                misfire_grace_time=MISFIRE_GRACE, coalesce=True, max_instances=1)
            return said
        if self.stopping.is_set():
            return ""
        said = f"giving up on {names} for {what} after {attempt} retries"
        log.error("%s", said)
        return said

    def _confirm_warnings(self, result: pipeline.RunResult, attempt: int) -> None:
        """A snapshot with warnings is complete but not final: after the close, fetch it
        again once WARNING_CONFIRM_AFTER has passed, when the same answer makes it final."""
        warned = [o for o in result.outcomes
                  if o.status == pipeline.OK and o.warnings and not o.final]
        for o in warned:
            for warning in o.warnings:
                log.warning("%s", warning)
        now = self.clock()
        recheck = [o.account for o in warned]
        if not recheck or now < result.session.settled or self.stopping.is_set():
            return
        limit = self.config.schedule.retry_attempts
        if attempt >= limit:
            log.warning("%s: snapshot of session %s left not final (warnings) after %d "
                        "retries", ", ".join(recheck), result.session.day, attempt)
            return
        when = now + max(store.WARNING_CONFIRM_AFTER,
                         timedelta(minutes=self.config.schedule.retry_spacing_minutes))
        log.info("%s: not final because of warnings; fetching again at %s to confirm",
                 ", ".join(recheck), when.astimezone(IST).strftime("%H:%M"))
        self.scheduler.add_job(
            self.take_due, DateTrigger(when), kwargs={
                "accounts": recheck, "attempt": attempt + 1, "reason": "confirm warnings"},
            id=f"confirm-{result.session.day}-{attempt + 1}-{'-'.join(recheck)}",
            replace_existing=True, misfire_grace_time=MISFIRE_GRACE, coalesce=True,
            max_instances=1)

    def check_manual_sessions(self, what: str = "login check") -> None:
        from snapshotter.ops.login import check_manual_sessions

        for result in check_manual_sessions(self.config, None, self.clock, what):
            if not result.ok:
                log.error("account %s: %s", result.account, result.message)

    def _progress(self) -> None:
        self._last_progress = _monotonic()

    def stuck_for(self) -> float | None:
        """Seconds the run in progress has gone without progress, when over the limit."""
        if self._job_started is None:
            return None
        quiet = _monotonic() - self._last_progress
        return quiet if quiet > self._stall_limit() else None

    @staticmethod
    def _stall_limit() -> float:
        interval = health.watchdog_interval()
        return max(interval, 1.0) if interval else STALL_SECONDS

    def heartbeat(self) -> None:
        """Watchdog ping while jobs make progress; a late heartbeat means the machine
        slept: catch up."""
        stuck = self.stuck_for()
        if stuck is None:
            self._stalled = False
            health.sd_notify("WATCHDOG=1")
        elif not self._stalled:
            self._stalled = True
            log.error("the snapshot job has made no progress for %.0fs: not feeding "
                      "systemd's watchdog", stuck)
        now = self.clock()
        last, self._last_beat = self._last_beat, now
        if last is not None and now - last > SLEEP_GAP:
            log.info("clock jumped %s (machine asleep?): catching up", now - last)
            # As a job of its own: the heartbeat must keep feeding the watchdog meanwhile.
            self.scheduler.add_job(self.take_due, kwargs={"reason": "wake"}, id="wake",
                                   replace_existing=True, max_instances=1,
                                   misfire_grace_time=MISFIRE_GRACE)

    # -- lifecycle -----------------------------------------------------------------------

    def start(self, catch_up: bool = True) -> None:
        trigger = SessionTrigger(self.calendar, self.config.schedule.time, self.config.timezone)
        self.scheduler.add_job(self.take_due, trigger, id="snapshot", name="daily snapshot",
                               max_instances=1, coalesce=True,
                               misfire_grace_time=MISFIRE_GRACE, replace_existing=True)
        if pipeline.manual_accounts(self.config.accounts):
            # Tell the user in time, before the close, that a manual login is missing.
            self.scheduler.add_job(
                self.check_manual_sessions,
                SessionTrigger(self.calendar, self.config.schedule.time,
                               before_close=LOGIN_CHECK_BEFORE_CLOSE),
                id="login-check", max_instances=1, coalesce=True,
                misfire_grace_time=3600, replace_existing=True)
            reminder = self.config.schedule.login_reminder
            if reminder is not None:
                self.scheduler.add_job(
                    self.check_manual_sessions,
                    ReminderTrigger(self.calendar, reminder, self.config.timezone),
                    kwargs={"what": "login reminder"}, id="login-reminder",
                    max_instances=1, coalesce=True, misfire_grace_time=3600,
                    replace_existing=True)
        beat = health.watchdog_interval() or HEARTBEAT_SECONDS
        self.scheduler.add_job(self.heartbeat, IntervalTrigger(seconds=min(beat, 60)),
                               id="heartbeat", max_instances=1, coalesce=True)
        if catch_up:
            self.scheduler.add_job(self.take_due, kwargs={"reason": "catch-up"},
                                   id="catch-up", max_instances=1,
                                   misfire_grace_time=MISFIRE_GRACE)
        self.scheduler.start()
        log.info("daemon started; next snapshot at %s", self.next_run())
        self.calendar.warn_once(self.clock().astimezone(IST).date())
        health.sd_notify("READY=1")

    def next_run(self) -> datetime | None:
        job = self.scheduler.get_job("snapshot")
        return getattr(job, "next_run_time", None) if job else None

    def stop(self) -> None:
        """Let the account snapshots in flight finish for a few seconds (no new ones
        start), then abandon them (recorded failed), and stop the scheduler."""
        self.stopping.set()
        health.sd_notify("STOPPING=1")
        if self.scheduler.running:
            self.scheduler.shutdown(wait=False)
        if not self._run_lock.acquire(timeout=STOP_GRACE):
            cancel = self._cancel
            if cancel is not None:
                log.info("abandoning the account snapshots still in flight")
                cancel.cancel(pipeline.SHUTTING_DOWN)
            if not self._run_lock.acquire(timeout=STOP_ABANDON):
                log.error("the snapshot job did not end; exiting without it")
                return
        self._run_lock.release()
        log.info("daemon stopped")

    @property
    def job_running(self) -> bool:
        return self._job_started is not None


def run_forever(daemon: Daemon) -> int:
    """Start, then sleep until SIGTERM/SIGINT (signal.pause: no timed waits)."""
    stop = threading.Event()

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        log.info("received %s: shutting down", signal.Signals(signum).name)
        stop.set()
        daemon.stopping.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    daemon.start()
    while not stop.is_set():
        signal.pause()
    daemon.stop()
    if daemon.job_running:
        # A job stuck where nothing can interrupt it (a database call, say): its
        # thread would keep the interpreter from exiting. Exit without it.
        logging.shutdown()
        os._exit(0)
    return 0
