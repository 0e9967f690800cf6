"""`snapshotter status`: per account, the last complete snapshot, last failure, next run.

The next run is when the schedule (``schedule.time``, as the daemon keeps it) next takes
a snapshot of that account, read from the ledger: the next session's run once the
account has a final snapshot of the latest session; that session's run while it is
still ahead; else the daemon's retry (``schedule.retry_attempts``, ``retry_spacing_minutes``
apart), "overdue" when that is past too, and none while Kite's rejection of the login
stands (runs do not try those credentials again).
"""

from __future__ import annotations

import json
import textwrap
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session as OrmSession
from tabulate import tabulate

from snapshotter.cancel import INTERRUPTED
from snapshotter.config import Config
from snapshotter.sessions import IST, Session, TradingCalendar, calendar_for, fire_time
from snapshotter.store.models import (
    SNAPSHOT_FAILED,
    SNAPSHOT_OK,
    WARNING_CONFIRM_AFTER,
    Snapshot,
)


@dataclass(frozen=True)
class NextRun:
    """When the schedule next snapshots one account (``at`` None: not while ``note``)."""

    at: datetime | None
    note: str = ""
    overdue: bool = False  # ``at`` is the latest session's run, passed without a final one


@dataclass
class AccountStatus:
    account: str
    last_complete: Snapshot | None
    last_failure: Snapshot | None
    has_latest: bool
    next_run: NextRun = field(default_factory=lambda: NextRun(None))

    @property
    def warnings(self) -> list[str]:
        """The warnings of the latest complete snapshot (answers that looked wrong)."""
        text = self.last_complete.warnings if self.last_complete else None
        return text.splitlines() if text else []

    @property
    def interrupted(self) -> Snapshot | None:
        """The newest attempt, when a Ctrl-C ended it unfinished."""
        f, c = self.last_failure, self.last_complete
        if f is None or INTERRUPTED not in (f.error or ""):
            return None
        return f if c is None or f.taken_at > c.taken_at else None

    @property
    def unconfirmed(self) -> bool:
        """Its latest snapshot has warnings and is not final yet (a later fetch checks)."""
        return bool(self.warnings) and self.last_complete is not None \
            and not self.last_complete.final


@dataclass
class StatusReport:
    latest_session: date
    accounts: list[AccountStatus]
    warning: str | None

    @property
    def healthy(self) -> bool:
        return all(a.has_latest and not a.unconfirmed for a in self.accounts)


def _latest(session: OrmSession, account: str, status: str) -> Snapshot | None:
    return session.scalars(
        sa.select(Snapshot).where(Snapshot.account == account, Snapshot.status == status)
        .order_by(Snapshot.snapshot_date.desc(), Snapshot.taken_at.desc()).limit(1)).first()


def _attempts_since(session: OrmSession, account: str, day: date,
                    since: datetime) -> list[Snapshot]:
    """The account's attempts at session ``day`` from ``since`` on, oldest first."""
    return list(session.scalars(
        sa.select(Snapshot).where(Snapshot.account == account, Snapshot.snapshot_date == day,
                                  Snapshot.taken_at >= since)
        .order_by(Snapshot.taken_at, Snapshot.id)))


def _next_run(config: Config, calendar: TradingCalendar, latest: Session, now: datetime,
              row: AccountStatus, attempts: list[Snapshot]) -> NextRun:
    """When the schedule next snapshots this account (see the module's docstring)."""
    run_time, tz = config.schedule.time, config.timezone
    newest = max((s for s in (row.last_complete, row.last_failure) if s is not None),
                 key=lambda s: s.taken_at, default=None)
    if newest is not None and newest.status == SNAPSHOT_FAILED \
            and newest.rejected_credentials:
        return NextRun(None, "login rejected")
    due = fire_time(latest, run_time, tz)
    final = row.last_complete is not None and row.last_complete.final \
        and row.last_complete.snapshot_date >= latest.day
    if final:
        return NextRun(fire_time(calendar.next_session(latest.day), run_time, tz))
    if due >= now:
        return NextRun(due)
    limit = config.schedule.retry_attempts
    if len(attempts) > limit:
        return NextRun(fire_time(calendar.next_session(latest.day), run_time, tz),
                       f"gave up on {latest.day} after {limit} retries")
    if attempts:
        last = attempts[-1]
        spacing = timedelta(minutes=config.schedule.retry_spacing_minutes)
        if last.status != SNAPSHOT_FAILED:  # complete with warnings: confirmed later
            spacing = max(spacing, WARNING_CONFIRM_AFTER)
        retry = last.taken_at + spacing
        if retry >= now:
            return NextRun(retry, f"retry {len(attempts)} of {limit}")
    return NextRun(due, "overdue", overdue=True)


def build_status(config: Config, engine: sa.Engine | sa.Connection,
                 now: datetime) -> StatusReport:
    """Each configured account's status at ``now``, read through ``engine`` (or a
    connection whose transaction it shares: the dashboard's snapshot)."""
    calendar = calendar_for(config)
    latest = calendar.latest_opened(now)
    due = fire_time(latest, config.schedule.time, config.timezone)
    rows = []
    with OrmSession(engine, expire_on_commit=False) as session:
        for acc in config.accounts:
            complete = _latest(session, acc.user_id, SNAPSHOT_OK)
            failure = _latest(session, acc.user_id, SNAPSHOT_FAILED)
            row = AccountStatus(acc.user_id, complete, failure,
                                complete is not None and complete.snapshot_date >= latest.day)
            attempts = _attempts_since(session, acc.user_id, latest.day, due) \
                if due < now else []
            row.next_run = _next_run(config, calendar, latest, now, row, attempts)
            rows.append(row)
    # Warn as soon as a next run falls past the holiday list (e.g. on 31 December).
    horizon_day = max([now.astimezone(IST).date(), latest.day]
                      + [r.next_run.at.astimezone(IST).date() for r in rows
                         if r.next_run.at is not None])
    return StatusReport(latest.day, rows, calendar.horizon_warning(horizon_day))


def snapshot_kind(a: AccountStatus) -> str:
    """The latest complete snapshot's kind: final, not final (warnings), intraday."""
    if a.last_complete is not None and a.last_complete.final:
        return "final"
    return "not final" if a.warnings else "intraday"


def _ist(when: datetime) -> str:
    return when.astimezone(IST).strftime("%Y-%m-%d %H:%M IST")


def _when(snap: Snapshot) -> str:
    return _ist(snap.taken_at)


def next_run_text(n: NextRun) -> str:
    if n.at is None:
        return f"none ({n.note})"
    if n.overdue:
        return f"overdue since {_ist(n.at)}"
    return f"{_ist(n.at)} ({n.note})" if n.note else _ist(n.at)


#: the widest last-failure text shown in the table (the whole text: --format json)
FAILURE_WIDTH = 80


def _shorten(error: str) -> str:
    """The failure, cut at a word boundary."""
    return textwrap.shorten(error, FAILURE_WIDTH, placeholder=" ...")


def warning_lines(report: StatusReport) -> list[str]:
    """What needs attention, per account: an overdue run, an interrupted one, the latest
    snapshot's warnings and whether it waits for a confirming fetch."""
    lines = []
    for a in report.accounts:
        if a.next_run.overdue and a.next_run.at is not None:
            lines.append(f"account {a.account}: the run due {_ist(a.next_run.at)} "
                         f"left no final snapshot of session {report.latest_session}: the "
                         "daemon catches up when it starts; `snapshotter run` takes it now")
        interrupted = a.interrupted
        if interrupted is not None:
            lines.append(f"account {a.account}: the last run was interrupted (Ctrl-C) "
                         f"before it finished ({_when(interrupted)}): `snapshotter run` "
                         "takes it now")
        lines += a.warnings
        if a.unconfirmed:
            lines.append(f"account {a.account}: that snapshot is not final: a later "
                         "run fetches again and keeps it once the same answer comes 30 "
                         "minutes apart")
    return lines


def render(report: StatusReport) -> str:
    table = []
    for a in report.accounts:
        c, f = a.last_complete, a.last_failure
        marks = f", {len(a.warnings)} warning{'s' if len(a.warnings) > 1 else ''}" \
            if a.warnings else ""
        table.append([
            a.account,
            f"{c.snapshot_date} ({snapshot_kind(a)}, {_when(c)}{marks})" if c else "never",
            f"{f.snapshot_date}: {_shorten(f.error or '')}" if f else "-",
            "yes" if a.has_latest else "NO",
            next_run_text(a.next_run),
        ])
    lines = [f"latest session: {report.latest_session}"]
    if report.warning:
        lines.append(f"warning: {report.warning}")
    lines.append(tabulate(table, headers=["account", "last complete snapshot", "last failure",
                                          "has latest session", "next run"],
                          disable_numparse=True))
    lines += [f"warning: {line}" for line in warning_lines(report)]
    return "\n".join(lines)


def _iso(when: datetime | None) -> str | None:
    return when.astimezone(IST).isoformat() if when is not None else None


def as_json(report: StatusReport) -> str:
    """`status --format json`: what the table shows, every text whole, times with their
    zone (IST)."""
    accounts: list[dict[str, Any]] = []
    for a in report.accounts:
        c, f = a.last_complete, a.last_failure
        accounts.append({
            "account": a.account,
            "last_complete": None if c is None else {
                "snapshot_date": c.snapshot_date.isoformat(), "taken_at": _iso(c.taken_at),
                "kind": snapshot_kind(a), "warnings": a.warnings},
            "last_failure": None if f is None else {
                "snapshot_date": f.snapshot_date.isoformat(), "taken_at": _iso(f.taken_at),
                "error": f.error or ""},
            "interrupted": a.interrupted is not None,
            "has_latest_session": a.has_latest,
            "next_run": {"at": _iso(a.next_run.at), "note": a.next_run.note,
                         "overdue": a.next_run.overdue},
        })
    return json.dumps({"latest_session": report.latest_session.isoformat(),
                       "healthy": report.healthy, "warning": report.warning,
                       "accounts": accounts}, indent=2)
