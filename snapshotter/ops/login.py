"""`snapshotter login`: a person logs in (auth: manual), scheduled runs reuse the session."""

from __future__ import annotations

import getpass
import logging
import sys
from collections.abc import Callable
from datetime import datetime

from snapshotter import pipeline
from snapshotter.config import Config
from snapshotter.errors import KiteError
from snapshotter.ops import health, notify

log = logging.getLogger(__name__)


class TerminalPrompt:
    """Asks on the terminal; reads plain lines from stdin when it is not a terminal."""

    def _line(self, label: str) -> str:
        sys.stderr.write(label)
        sys.stderr.flush()
        line = sys.stdin.readline()
        # The answer is not echoed: end the prompt's line so later output starts afresh.
        sys.stderr.write("\n")
        sys.stderr.flush()
        if not line:
            raise KiteError("no answer on standard input")
        return line.rstrip("\r\n")

    def secret(self, label: str) -> str:
        if not sys.stdin.isatty():
            return self._line(label)
        try:
            return getpass.getpass(label)
        except EOFError:
            raise KiteError("no answer on the terminal") from None

    def text(self, label: str) -> str:
        if not sys.stdin.isatty():
            return self._line(label)
        try:
            return input(label)
        except EOFError:
            raise KiteError("no answer on the terminal") from None

    def show(self, message: str) -> None:
        print(message, file=sys.stderr)


def check_manual_sessions(config: Config, user_ids: list[str] | None,
                          clock: Callable[[], datetime],
                          what: str = "login check") -> list[pipeline.LoginResult]:
    """`login --check`, the daemon's check before the close and its login reminder: pings
    the failure URL and notifies when a manual account has no working session (with the
    dashboard's login link for an account with a Kite Connect app)."""
    results = pipeline.check_sessions(config, user_ids, clock)
    failed = [r for r in results if not r.ok]
    if failed:
        health.ping(config.healthcheck_url, ok=False, message="; ".join(
            f"{r.account}: {r.message}" for r in failed))
        links = {r.account: notify.dashboard_login_url(config.serve, r.account)
                 for r in failed if config.account(r.account).api_key}
        notify.send(config.notify, notify.login_message(failed, config.notify.on, links,
                                                        what))
    return results
