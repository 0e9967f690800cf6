"""NSE calendar edges: weekends, 2026 holidays, Muhurat and Budget sessions, 2027 fallback."""

from __future__ import annotations

import logging
import subprocess
import sys
from datetime import date, datetime, time, timedelta
from pathlib import Path

import pytest

from snapshotter import nse_calendar, sessions
from snapshotter.sessions import IST, TradingCalendar


@pytest.fixture
def cal() -> TradingCalendar:
    return TradingCalendar()


def _ist(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=IST)


@pytest.mark.parametrize(("day", "is_session"), [
    (date(2026, 11, 27), True),    # Friday
    (date(2026, 11, 28), False),   # Saturday
    (date(2026, 11, 29), False),   # Sunday
    (date(2026, 1, 26), False),    # Republic Day 2026
    (date(2026, 11, 24), False),   # Guru Nanak Jayanti 2026
    (date(2026, 12, 25), False),   # Christmas 2026
    (date(2026, 2, 1), True),      # Union Budget, a Sunday (library does not know it)
    (date(2024, 11, 1), True),     # Diwali Muhurat 2024
])
def test_is_session(cal: TradingCalendar, day: date, is_session: bool) -> None:
    assert cal.is_session(day) is is_session


def test_regular_session_times(cal: TradingCalendar) -> None:
    s = cal.session(date(2026, 11, 27))
    assert s is not None and not s.special
    assert (s.open, s.close) == (_ist("2026-11-27T09:15"), _ist("2026-11-27T15:30"))


def test_muhurat_session_is_special_evening(cal: TradingCalendar) -> None:
    s = cal.session(date(2024, 11, 1))
    assert s is not None and s.special
    assert (s.open.astimezone(IST).time(), s.close.astimezone(IST).time()) == (
        time(18, 0), time(19, 0))
    # During the evening session, it is the latest opened session; before it, the previous.
    assert cal.latest_opened(_ist("2024-11-01T18:30")).day == date(2024, 11, 1)
    assert cal.latest_opened(_ist("2024-11-01T17:00")).day == date(2024, 10, 31)


def test_budget_sunday_is_special(cal: TradingCalendar) -> None:
    s = cal.session(date(2026, 2, 1))
    assert s is not None and s.special
    assert cal.latest_opened(_ist("2026-02-01T20:00")).day == date(2026, 2, 1)
    assert cal.previous_session(date(2026, 2, 2)).day == date(2026, 2, 1)


@pytest.mark.parametrize(("now", "expected"), [
    ("2026-11-28T10:00", date(2026, 11, 27)),  # Saturday -> Friday
    ("2026-11-30T09:14", date(2026, 11, 27)),  # Monday before the open -> Friday
    ("2026-11-30T09:15", date(2026, 11, 30)),
    ("2026-11-24T16:00", date(2026, 11, 23)),  # holiday -> previous session
    ("2026-11-25T01:00", date(2026, 11, 23)),  # night after a holiday
])
def test_latest_opened(cal: TradingCalendar, now: str, expected: date) -> None:
    assert cal.latest_opened(_ist(now)).day == expected


def test_previous_and_next_session(cal: TradingCalendar) -> None:
    assert cal.previous_session(date(2026, 11, 30)).day == date(2026, 11, 27)
    assert cal.next_session(date(2026, 11, 23)).day == date(2026, 11, 25)
    assert cal.next_session(date(2026, 12, 31)).day == date(2027, 1, 1)


def test_2027_weekdays_are_sessions_with_a_warning(cal: TradingCalendar,
                                                  caplog: pytest.LogCaptureFixture) -> None:
    assert cal.horizon == date(2026, 12, 31)
    assert cal.is_session(date(2027, 1, 26))      # a weekday: assumed open
    assert not cal.is_session(date(2027, 1, 30))  # Saturday
    assert cal.latest_opened(_ist("2027-01-30T12:00")).day == date(2027, 1, 29)
    assert cal.horizon_warning(date(2026, 12, 1)) is None
    message = cal.horizon_warning(date(2027, 1, 4))
    assert message and "calendar.holidays" in message
    with caplog.at_level(logging.WARNING):
        cal.warn_once(date(2027, 1, 4))
        cal.warn_once(date(2027, 1, 5))
    assert len([r for r in caplog.records if "holiday list ends" in r.message]) == 1


def test_configured_holidays_and_extra_sessions_2027() -> None:
    cal = TradingCalendar(holidays=[date(2027, 1, 26)], extra_sessions=[date(2027, 2, 6)])
    assert not cal.is_session(date(2027, 1, 26))
    assert cal.is_session(date(2027, 2, 6))  # a Saturday special session
    assert cal.previous_session(date(2027, 1, 27)).day == date(2027, 1, 25)
    assert cal.latest_opened(_ist("2027-02-07T12:00")).day == date(2027, 2, 6)


def test_naive_now_is_refused(cal: TradingCalendar) -> None:
    with pytest.raises(ValueError):
        cal.latest_opened(datetime(2026, 11, 27, 12, 0))  # noqa: DTZ001


# -- the committed table of the library's sessions ---------------------------------------


def test_the_committed_nse_calendar_is_what_the_library_lists() -> None:
    assert Path(nse_calendar.__file__).read_text(encoding="utf-8") \
        == sessions.nse_calendar_source(), \
        "snapshotter/nse_calendar.py is stale: run `make nse-calendar`"


def test_every_day_of_the_table_answers_as_the_library() -> None:
    import pandas_market_calendars as mcal

    assert sessions.installed_library_version() == mcal.__version__
    cal = TradingCalendar()
    first, last = nse_calendar.FIRST_DAY, nse_calendar.LAST_DAY
    schedule = mcal.get_calendar("XNSE").schedule(first.isoformat(), last.isoformat())
    expected = {ts.date(): (row.market_open, row.market_close)
                for ts, row in schedule.iterrows()}
    day = first
    while day <= last:
        found = cal.session(day)
        if day == date(2026, 2, 1):  # Union Budget, a Sunday (library does not know it)
            assert found is not None and day not in expected
        elif day not in expected:
            assert found is None, day
        else:
            assert found is not None, day
            assert (found.open, found.close) == expected[day], day
            assert found.open.tzinfo == IST
        day += timedelta(days=1)


def test_days_outside_the_table_come_from_the_library() -> None:
    cal = TradingCalendar()
    assert not cal.is_session(date(2010, 10, 2))  # Saturday
    assert not cal.is_session(date(2010, 1, 26))  # Republic Day
    s = cal.session(date(2010, 10, 1))
    assert s is not None and s.open.astimezone(IST).time() == time(9, 0)


def _modules_after(code: str) -> set[str]:
    script = f"import sys\n{code}\nprint(' '.join(sys.modules))"
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                            check=True, timeout=60)
    return set(result.stdout.split())


def test_the_calendar_within_the_table_imports_neither_pandas_nor_the_library() -> None:
    loaded = _modules_after(
        "from datetime import date, datetime\n"
        "from snapshotter.sessions import IST, TradingCalendar, next_fire_time\n"
        "cal = TradingCalendar()\n"
        "now = datetime(2026, 12, 31, 17, 0, tzinfo=IST)\n"
        "assert cal.latest_opened(now).day == date(2026, 12, 31)\n"
        "assert cal.horizon_warning(date(2026, 12, 31)) is None\n"
        "cal.warn_once(date(2026, 12, 31))\n"
        "assert not cal.is_session(date(2024, 11, 15))\n"
        "next_fire_time(cal, now.time(), now)")
    assert not loaded & {"pandas", "pandas_market_calendars", "numpy"}
