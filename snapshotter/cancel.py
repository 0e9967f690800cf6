"""Cancelling a run's work from outside: the run deadline and the daemon's shutdown.

A ``Cancel`` is shared by everything one run does. Cancelling it makes requests in
flight fail at once (their sockets are shut down by the callbacks registered here),
new requests refuse to start, and sleeps (backoff, TOTP waits) end early. No timed
thread waits: sleeps poll with ``time.sleep``, which libfaketime handles.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable

from snapshotter.errors import TransientKiteError

POLL_SECONDS = 0.1
#: why a run stopped on Ctrl-C: each unfinished account's ledger row says so (`status` too)
INTERRUPTED = "interrupted (Ctrl-C) before it finished; the next run takes it"


class Cancelled(TransientKiteError):
    """The run was cancelled (deadline or shutdown) while this account was in flight."""


class Cancel:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._reason: str | None = None
        self._callbacks: dict[int, Callable[[], None]] = {}
        self._next = 0

    @property
    def reason(self) -> str | None:
        return self._reason

    def is_set(self) -> bool:
        return self._reason is not None

    def cancel(self, reason: str) -> None:
        with self._lock:
            if self._reason is not None:
                return
            self._reason = reason
            callbacks = list(self._callbacks.values())
        for callback in callbacks:
            with contextlib.suppress(Exception):  # e.g. a socket already closed
                callback()

    def on_cancel(self, callback: Callable[[], None]) -> int:
        """Call ``callback`` when cancelled (at once if already); returns a handle."""
        with self._lock:
            if self._reason is None:
                self._next += 1
                self._callbacks[self._next] = callback
                return self._next
        callback()
        return 0

    def forget(self, handle: int) -> None:
        with self._lock:
            self._callbacks.pop(handle, None)

    def check(self, account: str | None = None) -> None:
        if self._reason is not None:
            raise Cancelled(self._reason, account=account)

    def sleep(self, seconds: float, account: str | None = None) -> None:
        """Sleep, waking early (with ``Cancelled``) when cancelled."""
        end = time.monotonic() + max(seconds, 0)
        while True:
            self.check(account)
            left = end - time.monotonic()
            if left <= 0:
                return
            time.sleep(min(left, POLL_SECONDS))
