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


def reserve_totp_step(engine: sa.Engine, account: str, step: int, *, now: datetime,
                      holder: str) -> int | None:
    """Reserve ``step`` for ``account``'s next 2FA code, committed before returning.
    None: this process now holds it (no other will send it); else the latest step
    another process holds (the caller waits for a later one)."""
    values = {"account": account, "step": step, "reserved_at": now, "holder": holder}
    for _ in range(2):
        try:
            with engine.begin() as conn:
                moved = conn.execute(_MOVE, {"who": account, "new_step": step, "when": now,
                                             "by": holder, "future": step + FUTURE_STEPS})
                if moved.rowcount == 1:
                    return None
                taken = conn.scalar(_TAKEN, {"who": account})
                if taken is not None:
                    return int(taken)
                conn.execute(sa.insert(_STEPS), values)
                return None
        except sa.exc.IntegrityError:
            continue  # another process made the account's first reservation meanwhile
    raise AssertionError("the account's totp_steps row exists after a unique violation")
