"""What a run reports: per account outcome, the run's exit code, and the digest of
rejected credentials the ledger keeps (the session cache's, kite.auth)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date, datetime

from snapshotter.errors import DatabaseUnavailable, ExitCode, LockLost, LoginRejected
from snapshotter.kite.auth import credentials_fingerprint
from snapshotter.sessions import Session

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
    lock_lost: str | None = None  # the run lost its run lock mid-run: why, naming the database

    @property
    def exit_code(self) -> ExitCode:
        if any(o.rejected for o in self.outcomes):
            return LoginRejected.exit_code
        if any(o.spooled for o in self.outcomes):  # the lock goes with a lost database
            return DatabaseUnavailable.exit_code
        if self.lock_lost:
            return LockLost.exit_code
        return ExitCode.FAILURE if any(o.status == FAILED for o in self.outcomes) \
            else ExitCode.OK


# The ledger's snapshots.rejected_credentials: the fingerprint the session cache keeps.
credentials_digest = credentials_fingerprint
