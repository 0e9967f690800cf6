"""TOTP step reservations (``totp_steps``): before a process sends an account's 2FA code
it reserves the code's 30 s step here, durably, so that no other process or host sends
a code of that step or an earlier one, with or without the run lock.

One row per account holds the latest reserved step. Reserving is a conditional UPDATE
(``step < :step``) that the database applies atomically (PostgreSQL re-checks the
condition on the row it waited for; SQLite has one writer at a time); the account's
first reservation is an INSERT that the primary key keeps single.
"""

from __future__ import annotations

import os
import socket
import threading
from dataclasses import dataclass, field
from datetime import datetime

import sqlalchemy as sa

from snapshotter.store.models import TotpStep

_STEPS = TotpStep.metadata.tables[TotpStep.__tablename__]
# A reserved step further ahead than this was made under a clock set ahead (e.g. a
# libfaketime rehearsal against this database): Kite never accepted its code, so it
# holds no later step back (kite.auth ignores such a step in the session cache alike).
FUTURE_STEPS = 2
# Built once (every login runs them): the account's row moved to a later step, unless
# it holds this step or a later one; else the step it holds.
_MOVE = sa.update(_STEPS).where(
    _STEPS.c.account == sa.bindparam("who"),
    sa.or_(_STEPS.c.step < sa.bindparam("new_step"), _STEPS.c.step > sa.bindparam("future")),
).values(step=sa.bindparam("new_step"), reserved_at=sa.bindparam("when"),
         holder=sa.bindparam("by"))
_TAKEN = sa.select(_STEPS.c.step).where(_STEPS.c.account == sa.bindparam("who"))


def this_process() -> str:
    """The ``holder`` of the reservations this process makes: host and pid."""
    return f"{socket.gethostname()}:{os.getpid()}"


def _reserve(conn: sa.Connection, account: str, step: int, now: datetime,
             holder: str) -> int | None:
    """One reservation inside the caller's transaction (``reserve_totp_step``'s answer)."""
    moved = conn.execute(_MOVE, {"who": account, "new_step": step, "when": now,
                                 "by": holder, "future": step + FUTURE_STEPS})
    if moved.rowcount == 1:
        return None
    taken = conn.scalar(_TAKEN, {"who": account})
    if taken is not None:
        return int(taken)
    conn.execute(sa.insert(_STEPS), {"account": account, "step": step, "reserved_at": now,
                                     "holder": holder})
    return None


def reserve_totp_step(engine: sa.Engine, account: str, step: int, *, now: datetime,
                      holder: str) -> int | None:
    """Reserve ``step`` for ``account``'s next 2FA code, committed before returning.
    None: this process now holds it (no other will send it); else the latest step
    another process holds (the caller waits for a later one)."""
    for _ in range(2):
        try:
            with engine.begin() as conn:
                return _reserve(conn, account, step, now, holder)
        except sa.exc.IntegrityError:
            continue  # another process made the account's first reservation meanwhile
    raise AssertionError("the account's totp_steps row exists after a unique violation")


@dataclass
class _Wanted:
    account: str
    step: int
    now: datetime
    done: threading.Event = field(default_factory=threading.Event)
    taken: int | None = None
    error: BaseException | None = None


class GroupReservations:
    """A run's reservations, committed together: the logins that ask for a step while
    another batch commits are reserved in the next transaction, all of them in one
    (one commit, one fsync, where each login's own would queue behind the others'). A
    login still waits until its step is committed before its code is sent. When the
    database refuses a batch (another process made an account's first reservation at
    the same moment), each of its steps is reserved alone."""

    def __init__(self, engine: sa.Engine, holder: str) -> None:
        self.engine = engine
        self.holder = holder
        self._lock = threading.Lock()
        self._queue: list[_Wanted] = []
        self._leading = False

    def reserve(self, account: str, step: int, now: datetime) -> int | None:
        """``reserve_totp_step``'s answer for this account and step."""
        wanted = _Wanted(account, step, now)
        with self._lock:
            self._queue.append(wanted)
            lead = not self._leading
            self._leading = True
        if lead:  # commit batches until none is waiting (this one's is the first)
            while True:
                with self._lock:
                    batch, self._queue = self._queue, []
                    if not batch:
                        self._leading = False
                        break
                self._commit(batch)
        else:
            wanted.done.wait()  # no timeout: the leader sets it (libfaketime-safe)
        if wanted.error is not None:
            raise wanted.error
        return wanted.taken

    def _commit(self, batch: list[_Wanted]) -> None:
        try:
            try:
                with self.engine.begin() as conn:
                    taken = [_reserve(conn, w.account, w.step, w.now, self.holder)
                             for w in batch]
            except sa.exc.IntegrityError:
                taken = [reserve_totp_step(self.engine, w.account, w.step, now=w.now,
                                           holder=self.holder) for w in batch]
            for wanted, answer in zip(batch, taken, strict=True):
                wanted.taken = answer
        except BaseException as exc:  # every login of the batch learns it
            for wanted in batch:
                wanted.error = exc
        finally:
            for wanted in batch:
                wanted.done.set()
