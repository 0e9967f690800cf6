"""NSE trading sessions: which day is a session, when it opens and closes (Asia/Kolkata).

Backed by pandas_market_calendars' XNSE calendar (holidays, Diwali Muhurat special
sessions). Its holiday list stops at a horizon (end of 2026 at the time of writing);
past it every weekday counts as a session, with a warning, and the user can list
holidays and extra sessions in config.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from functools import lru_cache
from typing import Any
from zoneinfo import ZoneInfo

import pandas as pd
import pandas_market_calendars as mcal

IST = ZoneInfo("Asia/Kolkata")
REGULAR_OPEN = time(9, 15)
REGULAR_CLOSE = time(15, 30)

log = logging.getLogger(__name__)

# Sessions the calendar library does not know (open, close in IST).
KNOWN_SPECIAL_SESSIONS: dict[date, tuple[time, time]] = {
    date(2026, 2, 1): (REGULAR_OPEN, REGULAR_CLOSE),  # Union Budget, a Sunday
}


# Closing prices settle after the close (NSE declares them around 15:40; Kite's holdings
# use them after that): a snapshot is final only once this long after the close.
SETTLE_MARGIN = timedelta(minutes=30)


@dataclass(frozen=True)
class Session:
    day: date
    open: datetime  # aware
    close: datetime  # aware

    @property
    def settled(self) -> datetime:
        """From when a snapshot of this session is final (close + SETTLE_MARGIN)."""
        return self.close + SETTLE_MARGIN

    @property
    def special(self) -> bool:
        local_open = self.open.astimezone(IST).time()
        local_close = self.close.astimezone(IST).time()
        return (self.day.weekday() >= 5 or local_open != REGULAR_OPEN
                or local_close != REGULAR_CLOSE)


@lru_cache(maxsize=1)
def _xnse() -> mcal.MarketCalendar:
    return mcal.get_calendar("XNSE")


@lru_cache(maxsize=1)
def library_horizon() -> date:
    """The last day for which the library lists NSE holidays."""
    holidays = _xnse().holidays().holidays
    return date(pd.Timestamp(holidays[-1]).year, 12, 31)


@lru_cache(maxsize=64)
def _library_year(year: int) -> dict[date, tuple[datetime, datetime]]:
    frame = _xnse().schedule(f"{year}-01-01", f"{year}-12-31")
    return {
        ts.date(): (row.market_open.to_pydatetime(), row.market_close.to_pydatetime())
        for ts, row in frame.iterrows()
    }


def _at(day: date, t: time) -> datetime:
    return datetime.combine(day, t, tzinfo=IST)


class TradingCalendar:
    def __init__(self, holidays: tuple[date, ...] | list[date] = (),
                 extra_sessions: tuple[date, ...] | list[date] = ()):
        self.holidays = frozenset(holidays)
        self.extra_sessions = frozenset(extra_sessions)
        self._warned = False

    @property
    def horizon(self) -> date:
        return library_horizon()

    def beyond_horizon(self, day: date) -> bool:
        return day > self.horizon

    def horizon_warning(self, day: date) -> str | None:
        if not self.beyond_horizon(day):
            return None
        return (f"NSE holiday list ends {self.horizon.isoformat()}: treating every weekday after "
                "it as a session; list holidays under calendar.holidays in the config "
                "(or upgrade pandas_market_calendars)")

    def warn_once(self, day: date) -> None:
        message = self.horizon_warning(day)
        if message and not self._warned:
            self._warned = True
            log.warning(message)

    def session(self, day: date) -> Session | None:
        """The session held on ``day``, or None when the exchange is closed."""
        if day in self.holidays:
            return None
        if day in KNOWN_SPECIAL_SESSIONS:
            o, c = KNOWN_SPECIAL_SESSIONS[day]
            return Session(day, _at(day, o), _at(day, c))
        if day in self.extra_sessions:
            return Session(day, _at(day, REGULAR_OPEN), _at(day, REGULAR_CLOSE))
        if self.beyond_horizon(day):
            if day.weekday() >= 5:
                return None
            return Session(day, _at(day, REGULAR_OPEN), _at(day, REGULAR_CLOSE))
        found = _library_year(day.year).get(day)
        if found is None:
            return None
        return Session(day, found[0].astimezone(IST), found[1].astimezone(IST))

    def is_session(self, day: date) -> bool:
        return self.session(day) is not None

    def previous_session(self, day: date) -> Session:
        """The last session strictly before ``day``."""
        d = day - timedelta(days=1)
        for _ in range(60):
            found = self.session(d)
            if found:
                return found
            d -= timedelta(days=1)
        raise LookupError(f"no NSE session in the 60 days before {day}")

    def next_session(self, day: date) -> Session:
        """The first session strictly after ``day``."""
        d = day + timedelta(days=1)
        for _ in range(60):
            found = self.session(d)
            if found:
                return found
            d += timedelta(days=1)
        raise LookupError(f"no NSE session in the 60 days after {day}")

    def latest_opened(self, now: datetime) -> Session:
        """The latest session that has opened by ``now`` (an aware datetime)."""
        if now.tzinfo is None:
            raise ValueError("now must be timezone-aware")
        today = now.astimezone(IST).date()
        found = self.session(today)
        if found and found.open <= now:
            return found
        return self.previous_session(today)


def utc_now() -> datetime:
    return datetime.now(UTC)


class ManualClock:
    """A clock that only moves when told: the demo walks history with it; tests inject it."""

    def __init__(self, now: datetime):
        self.now = now

    def __call__(self) -> datetime:
        return self.now

    def set(self, ist_text: str) -> None:
        """Set to a local IST time, e.g. "2026-11-27T16:30"."""
        self.now = datetime.fromisoformat(ist_text).replace(tzinfo=IST)


def fire_time(session: Session, run_time: time, tz: Any = IST) -> datetime:
    """When to snapshot ``session``: the later of schedule.time and its settled close."""
    scheduled = datetime.combine(session.day, run_time, tzinfo=tz)
    return max(scheduled, session.settled)


def next_fire_time(calendar: TradingCalendar, run_time: time, earliest: datetime,
                   tz: Any = IST, *, before_close: timedelta | None = None
                   ) -> datetime | None:
    """The first scheduled snapshot time at or after ``earliest`` (``fire_time`` of each
    session; or ``before_close`` ahead of each close, for the manual-login check)."""
    day = earliest.astimezone(IST).date() - timedelta(days=1)
    for _ in range(400):
        session = calendar.session(day)
        if session is not None:
            when = session.close - before_close if before_close is not None \
                else fire_time(session, run_time, tz)
            if when >= earliest:
                return when
        day += timedelta(days=1)
    return None
