"""Money and dates as Indian users read them: the rupee sign, Indian digit grouping
(12,34,567.89), lakh and crore; dates and times in IST."""

from __future__ import annotations

import math
from datetime import date, datetime
from zoneinfo import ZoneInfo

IST = ZoneInfo("Asia/Kolkata")
LAKH = 100_000
CRORE = 10_000_000


def indian_grouping(whole: int) -> str:
    """12345678 -> '1,23,45,678': the last three digits, then groups of two."""
    digits = str(abs(whole))
    head, tail = digits[:-3], digits[-3:]
    groups: list[str] = []
    while len(head) > 2:
        groups.insert(0, head[-2:])
        head = head[:-2]
    if head:
        groups.insert(0, head)
    text = ",".join([*groups, tail]) if groups else tail
    return f"-{text}" if whole < 0 else text


def number(value: float | int | None, decimals: int = 2) -> str:
    """A figure with Indian grouping; '' for a missing one, as the reports leave it empty."""
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return ""
    rounded = round(float(value), decimals)
    sign = "-" if rounded < 0 else ""
    whole, _, fraction = f"{abs(rounded):.{decimals}f}".partition(".")
    text = indian_grouping(int(whole))
    return f"{sign}{text}.{fraction}" if decimals else f"{sign}{text}"


def rupees(value: float | int | None, decimals: int = 2) -> str:
    """'₹12,34,567.89' ('-₹...' when negative); '' for a missing value."""
    text = number(value, decimals)
    if not text:
        return ""
    return f"-₹{text[1:]}" if text.startswith("-") else f"₹{text}"


def short_rupees(value: float) -> str:
    """For chart axes: '₹1.25 Cr', '₹12.5 L', '₹45,000'."""
    size = abs(value)
    sign = "-" if value < 0 else ""
    if size >= CRORE:
        return f"{sign}₹{size / CRORE:.2f} Cr"
    if size >= LAKH:
        return f"{sign}₹{size / LAKH:.2f} L"
    return f"{sign}₹{indian_grouping(round(size))}"


def percent(value: float | None, decimals: int = 2) -> str:
    if value is None or not math.isfinite(value):
        return ""
    return f"{value * 100:.{decimals}f}%"


def ist(moment: datetime | date | None) -> str:
    """A time as IST ('2026-12-07 16:35 IST'); a date as it is (dates are IST sessions)."""
    if moment is None:
        return ""
    if isinstance(moment, datetime):
        aware = moment if moment.tzinfo else moment.replace(tzinfo=ZoneInfo("UTC"))
        return aware.astimezone(IST).strftime("%Y-%m-%d %H:%M IST")
    return moment.isoformat()
