"""The snapshot job: config -> kite client -> normalize -> store. The CLI, the daemon
and the timer call it; operations reach Kite only through it.

Its names are looked up in their module when used (PEP 562 ``__getattr__``, from the
table below; nothing is cached here), so that a command using one stage module
(`benchmark import`, `import`) does not load the login code and the rest.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
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

_MODULE_OF = {
    **dict.fromkeys(("LoginResult", "check_sessions", "login_accounts", "manual_accounts"),
                    "logins"),
    **dict.fromkeys(("FAILED", "OK", "SKIPPED", "AccountOutcome", "RunResult"), "outcomes"),
    **dict.fromkeys(("ReplayResult", "replay_raw"), "replay"),
    **dict.fromkeys(("RUN_DEADLINE", "SHUTTING_DOWN", "calendar_for", "run_snapshot",
                     "select_accounts"), "run"),
    "store_spooled": "storing",
}

__all__ = [
    "FAILED", "OK", "RUN_DEADLINE", "SHUTTING_DOWN", "SKIPPED", "AccountOutcome",
    "LoginResult", "ReplayResult", "RunResult", "calendar_for", "check_sessions",
    "login_accounts", "manual_accounts", "replay_raw", "run_snapshot", "select_accounts",
    "store_spooled",
]


def __getattr__(name: str) -> Any:
    if name not in _MODULE_OF:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{_MODULE_OF[name]}"), name)
