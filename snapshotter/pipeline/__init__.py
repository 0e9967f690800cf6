"""The snapshot job: config -> kite client -> normalize -> store. The CLI, the daemon
and the timer call it; operations reach Kite only through it."""

from snapshotter.pipeline.logins import (
    LoginResult,
    check_sessions,
    login_accounts,
    manual_accounts,
)
from snapshotter.pipeline.outcomes import FAILED, OK, SKIPPED, AccountOutcome, RunResult
from snapshotter.pipeline.replay import ReplayResult, replay_raw
from snapshotter.pipeline.run import (
    RUN_DEADLINE,
    SHUTTING_DOWN,
    calendar_for,
    run_snapshot,
    select_accounts,
)
from snapshotter.pipeline.storing import store_spooled

__all__ = [
    "FAILED",
    "OK",
    "RUN_DEADLINE",
    "SHUTTING_DOWN",
    "SKIPPED",
    "AccountOutcome",
    "LoginResult",
    "ReplayResult",
    "RunResult",
    "calendar_for",
    "check_sessions",
    "login_accounts",
    "manual_accounts",
    "replay_raw",
    "run_snapshot",
    "select_accounts",
    "store_spooled",
]
