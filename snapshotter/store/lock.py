"""One run at a time per database, across processes and hosts.

PostgreSQL: a session-level advisory lock held on its own unpooled connection for the
whole run (a transaction-level lock would be released at the first COMMIT). SQLite: an
flock on a file beside the database, which serves processes on one host. The lock only
gives mutual exclusion; once-only comes from deciding what to do (reading the ledger)
while holding it, which is what pipeline.run_snapshot does.

A PostgreSQL lock dies with its connection (a backend terminated, the server's
``idle_session_timeout``, a network cut), silently: ``HeldLock.check`` asks the lock's
own connection whether it still holds the lock, and the run checks before each login and
each store. The lock's session turns ``idle_session_timeout`` off for itself and keeps
TCP keepalives on, so a long run does not lose it by idling. An flock cannot be lost that
way; there the check only asks whether the lock file was deleted or replaced. Logins
never rely on the lock alone: each TOTP step is also reserved in the database
(store.totp).
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import sqlalchemy as sa
from sqlalchemy.pool import NullPool

from snapshotter.errors import LockLost, LockTimeout
from snapshotter.store.engine import describe_url, normalize_url

log = logging.getLogger(__name__)

# pg_advisory_lock key: any fixed 64-bit number unique to this program.
ADVISORY_KEY = 0x4B495445_534E4150  # "KITESNAP"
POLL_SECONDS = 0.5
# libpq's TCP keepalives on the lock's connection: a dead peer is noticed in minutes, and
# no idle-connection reaper between here and the server sees it idle.
KEEPALIVES = {"keepalives": 1, "keepalives_idle": 30, "keepalives_interval": 10,
              "keepalives_count": 3}


class HeldLock:
    """The run lock while it is held: ``check`` raises ``LockLost`` (and keeps raising
    it) once the lock is gone. Safe to call from several threads."""

    def __init__(self, where: str, still_held: Callable[[], bool] | None = None):
        self.where = where
        self._still_held = still_held
        self._guard = threading.Lock()
        self.lost: LockLost | None = None

    def check(self) -> None:
        with self._guard:
            if self.lost is None and self._still_held is not None \
                    and not self._still_held():
                self.lost = LockLost(
                    f"lost the run lock on {self.where} mid-run (its connection ended): "
                    "no further logins in this run, so that another run cannot log in "
                    "beside it; finished answers are stored or spooled")
                log.error("%s", self.lost)
            if self.lost is not None:
                raise self.lost


@contextlib.contextmanager
def run_lock(database_url: str, *, deadline: float | None = None,
             on_wait: Callable[[], None] | None = None) -> Iterator[HeldLock]:
    """Hold the database's run lock. While another process holds it, poll until the
    monotonic ``deadline`` (then ``LockTimeout``); ``on_wait`` is called at each poll
    (it may raise, e.g. when the run is cancelled)."""
    url = sa.make_url(normalize_url(database_url))
    where = describe_url(database_url)
    waiter = _Waiter(where, deadline, on_wait)
    if url.get_backend_name() == "postgresql":
        with _pg_lock(url, waiter) as still_held:
            yield HeldLock(where, still_held)
    elif url.get_backend_name() == "sqlite" and url.database not in (None, "", ":memory:"):
        with _file_lock(Path(str(url.database)).with_suffix(".lock"), waiter) as still_held:
            yield HeldLock(where, still_held)
    else:
        yield HeldLock(where)


class _Waiter:
    def __init__(self, where: str, deadline: float | None,
                 on_wait: Callable[[], None] | None):
        self.where = where
        self.deadline = deadline
        self.on_wait = on_wait
        self.started = time.monotonic()
        self.announced = False

    def wait(self) -> None:
        """One poll interval of waiting for another run's lock, or ``LockTimeout``."""
        if not self.announced:
            log.info("another snapshotter run holds the run lock on %s; waiting for it",
                     self.where)
            self.announced = True
        if self.on_wait is not None:
            self.on_wait()
        now = time.monotonic()
        if self.deadline is not None and now >= self.deadline:
            raise LockTimeout(
                f"another snapshotter run still holds the run lock on {self.where} after "
                f"{now - self.started:.0f}s; giving up (kite.run_timeout). The next run "
                "tries again")
        left = self.deadline - now if self.deadline is not None else POLL_SECONDS
        time.sleep(max(0.0, min(POLL_SECONDS, left)))


@contextlib.contextmanager
def _pg_lock(url: sa.URL, waiter: _Waiter) -> Iterator[Callable[[], bool]]:
    """Yields the lock's check: does its connection still hold it?"""
    engine = sa.create_engine(url, poolclass=NullPool, connect_args=KEEPALIVES)
    try:
        with engine.connect() as conn:
            conn = conn.execution_options(isolation_level="AUTOCOMMIT")
            if (conn.dialect.server_version_info or (0,)) >= (14,):
                conn.execute(sa.text("SET idle_session_timeout = 0"))
            try_lock = sa.text("SELECT pg_try_advisory_lock(:k)")
            while not conn.execute(try_lock, {"k": ADVISORY_KEY}).scalar():
                waiter.wait()

            def still_held() -> bool:
                try:
                    return bool(conn.execute(_HOLDS_LOCK, {"k": ADVISORY_KEY}).scalar())
                except sa.exc.SQLAlchemyError:
                    return False

            try:
                yield still_held
            finally:
                # The connection may be gone (database lost mid-run): the server dropped
                # the lock with it.
                with contextlib.suppress(sa.exc.SQLAlchemyError):
                    conn.execute(sa.text("SELECT pg_advisory_unlock(:k)"),
                                 {"k": ADVISORY_KEY})
    finally:
        with contextlib.suppress(sa.exc.SQLAlchemyError):
            engine.dispose()


# A bigint advisory key shows in pg_locks as classid (high 32 bits), objid (low 32 bits)
# and objsubid 1.
_HOLDS_LOCK = sa.text(
    "SELECT EXISTS (SELECT 1 FROM pg_locks WHERE locktype = 'advisory' AND granted "
    "AND pid = pg_backend_pid() AND objsubid = 1 "
    "AND ((classid::bigint << 32) | objid::bigint) = :k)")


@contextlib.contextmanager
def _file_lock(path: Path, waiter: _Waiter) -> Iterator[Callable[[], bool]]:
    """Yields the lock's check: is the locked file still the one at ``path``? (A lock
    file deleted or replaced under a run, e.g. by a clean-up job, lets another run lock
    a new one.)"""
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)

    def still_held() -> bool:
        try:
            return os.path.samestat(os.fstat(fd), os.stat(path))
        except OSError:
            return False

    try:
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                waiter.wait()
        yield still_held
    finally:
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)
