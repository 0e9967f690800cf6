"""`snapshotter status`: per account, the last complete snapshot, last failure, next run."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime

import sqlalchemy as sa
from sqlalchemy.orm import Session as OrmSession
from tabulate import tabulate

from snapshotter.config import Config
from snapshotter.sessions import IST, calendar_for, next_fire_time
from snapshotter.store.models import SNAPSHOT_FAILED, SNAPSHOT_OK, Snapshot


@dataclass
class AccountStatus:
    account: str
    last_complete: Snapshot | None
    last_failure: Snapshot | None
    has_latest: bool

    @property
    def warnings(self) -> list[str]:
        """The warnings of the latest complete snapshot (answers that looked wrong)."""
        text = self.last_complete.warnings if self.last_complete else None
        return text.splitlines() if text else []

    @property
    def unconfirmed(self) -> bool:
        """Its latest snapshot has warnings and is not final yet (a later fetch checks)."""
        return bool(self.warnings) and self.last_complete is not None \
            and not self.last_complete.final


@dataclass
class StatusReport:
    latest_session: date
    next_run: datetime | None
    accounts: list[AccountStatus]
    warning: str | None

    @property
    def healthy(self) -> bool:
        return all(a.has_latest and not a.unconfirmed for a in self.accounts)


def _latest(session: OrmSession, account: str, status: str) -> Snapshot | None:
    return session.scalars(
        sa.select(Snapshot).where(Snapshot.account == account, Snapshot.status == status)
        .order_by(Snapshot.snapshot_date.desc(), Snapshot.taken_at.desc()).limit(1)).first()


def build_status(config: Config, engine: sa.Engine, now: datetime) -> StatusReport:
    calendar = calendar_for(config)
    latest = calendar.latest_opened(now)
    rows = []
    with OrmSession(engine, expire_on_commit=False) as session:
        for acc in config.accounts:
            complete = _latest(session, acc.user_id, SNAPSHOT_OK)
            failure = _latest(session, acc.user_id, SNAPSHOT_FAILED)
            rows.append(AccountStatus(acc.user_id, complete, failure,
                                      complete is not None
                                      and complete.snapshot_date >= latest.day))
    next_run = next_fire_time(calendar, config.schedule.time, now, config.timezone)
    # Warn as soon as the next run falls past the holiday list (e.g. on 31 December).
    horizon_day = max(now.astimezone(IST).date(),
                      next_run.astimezone(IST).date() if next_run else latest.day)
    return StatusReport(latest.day, next_run, rows, calendar.horizon_warning(horizon_day))


def _when(snap: Snapshot) -> str:
    return snap.taken_at.astimezone(IST).strftime("%Y-%m-%d %H:%M IST")


def _kind(a: AccountStatus) -> str:
    if a.last_complete is not None and a.last_complete.final:
        return "final"
    return "not final" if a.warnings else "intraday"


def render(report: StatusReport) -> str:
    table = []
    for a in report.accounts:
        c, f = a.last_complete, a.last_failure
        marks = f", {len(a.warnings)} warning{'s' if len(a.warnings) > 1 else ''}" \
            if a.warnings else ""
        table.append([
            a.account,
            f"{c.snapshot_date} ({_kind(a)}, {_when(c)}{marks})" if c else "never",
            f"{f.snapshot_date}: {(f.error or '')[:80]}" if f else "-",
            "yes" if a.has_latest else "NO",
        ])
    next_run = report.next_run.astimezone(IST).strftime("%Y-%m-%d %H:%M IST") \
        if report.next_run else "none"
    lines = [f"latest session: {report.latest_session}; next scheduled run: {next_run}"]
    if report.warning:
        lines.append(f"warning: {report.warning}")
    lines.append(tabulate(table, headers=["account", "last complete snapshot", "last failure",
                                          "has latest session"], disable_numparse=True))
    for a in report.accounts:
        lines += [f"warning: {w}" for w in a.warnings]
        if a.unconfirmed:
            lines.append(f"warning: account {a.account}: that snapshot is not final: a later "
                         "run fetches again and keeps it once the same answer comes 30 "
                         "minutes apart")
    return "\n".join(lines)
