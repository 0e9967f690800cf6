"""Which accounts the household (the all-accounts figures) counts: ``household_leaves``,
written by `snapshotter household leave` and `household rejoin`; ``household_daily``
reads it."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, timedelta

import sqlalchemy as sa

from snapshotter.errors import UsageError
from snapshotter.store.models import HouseholdLeave

_LAST_COUNTED = sa.text("""
SELECT snapshot_date, total_value FROM portfolio_daily
WHERE account = :account AND snapshot_date < :left_on
ORDER BY snapshot_date DESC LIMIT 1""")


@dataclass(frozen=True)
class Leave:
    """``account`` leaves on ``left_on``; ``last_date``/``last_value``: its last complete
    snapshot before that, whose value leaves the household as a withdrawal."""

    account: str
    left_on: date
    last_date: date
    last_value: float


def _as_date(value: object) -> date:
    return value if isinstance(value, date) else date.fromisoformat(str(value))


def leave(engine: sa.Engine, account: str, left_on: date | None = None) -> Leave:
    """Record that ``account`` left the household on ``left_on`` (default: the day after
    its last complete snapshot), replacing an earlier record; a UsageError when it has no
    complete snapshot before that day."""
    with engine.begin() as conn:
        dates = conn.execute(sa.text(
            "SELECT MIN(snapshot_date), MAX(snapshot_date) FROM portfolio_daily "
            "WHERE account = :account"), {"account": account}).one()
        if dates[0] is None:
            raise UsageError(f"account {account} has no complete snapshot: it never joined "
                             "the household")
        first, last = _as_date(dates[0]), _as_date(dates[1])
        left_on = left_on or last + timedelta(days=1)
        if left_on <= first:
            raise UsageError(f"--on {left_on}: account {account}'s first complete snapshot "
                             f"is {first}; it can leave only after it")
        counted = conn.execute(_LAST_COUNTED, {"account": account, "left_on": left_on}).one()
        conn.execute(sa.delete(HouseholdLeave).where(HouseholdLeave.account == account))
        conn.execute(sa.insert(HouseholdLeave).values(account=account, left_on=left_on))
    return Leave(account, left_on, _as_date(counted[0]), float(counted[1]))


def rejoin(engine: sa.Engine, account: str) -> date | None:
    """Forget that ``account`` left; the ``left_on`` forgotten, or None when it had not."""
    with engine.begin() as conn:
        left_on = conn.scalar(sa.select(HouseholdLeave.left_on)
                              .where(HouseholdLeave.account == account))
        conn.execute(sa.delete(HouseholdLeave).where(HouseholdLeave.account == account))
    return _as_date(left_on) if left_on is not None else None
