"""Benchmark closes, from an index CSV file or from Kite's daily candles, as one frame of
(``date``, ``close``): one row per date, oldest first. Pure: bytes or payloads in, no I/O.

The CSV is what NSE's index pages (niftyindices.com, nseindia.com "historical index
data") export: a header row naming the columns, then one row per session. Only ``Date``
and ``Close`` are read (found whatever their case and surrounding spaces: NSE writes
``"Date "``, ``"Close "``); the others (Open, High, Low, Shares Traded, Turnover...) are
ignored. Dates are ``01 Dec 2026``, ``01-Dec-2026``, ``01-DEC-2026`` (English month
names, any case, never the locale's) or ISO ``2026-12-01``; closes may carry thousands
separators (``24,123.45``, ``2,41,234.50``). A UTF-8 byte order mark is dropped; a file
that is not UTF-8 is read as Latin-1 (the two columns read are ASCII either way).

A file with a problem is refused whole, with one line naming the file and the line and
column at fault (``BenchmarkFileError``, exit code 2).
"""

from __future__ import annotations

import codecs
import csv
import io
from typing import Any

import numpy as np
import pandas as pd

from snapshotter.errors import ExitCode, SnapshotterError
from snapshotter.normalize.columns import convert
from snapshotter.normalize.values import KITE_TZ, PayloadError

DATE_COLUMN, CLOSE_COLUMN = "date", "close"
DATE_FORMATS = "01 Dec 2026, 01-Dec-2026 or 2026-12-01"
_MONTHS = {name: number for number, names in enumerate(
    (("jan", "january"), ("feb", "february"), ("mar", "march"), ("apr", "april"),
     ("may",), ("jun", "june"), ("jul", "july"), ("aug", "august"),
     ("sep", "sept", "september"), ("oct", "october"), ("nov", "november"),
     ("dec", "december")), start=1) for name in names}
_DAY_MONTH_YEAR = r"^(?P<day>\d{1,2})[ -](?P<month>[A-Za-z]{3,9})[ -](?P<year>\d{4})$"
_ISO = r"^(?P<year>\d{4})-(?P<month>\d{1,2})-(?P<day>\d{1,2})$"
# The closes an index can plausibly have (indices start at 100 or 1000; NIFTY 50 is in
# the tens of thousands): outside them a file or an answer is wrong, and a return over
# them would be absurd or infinite (1e300 / 1e-300).
MIN_CLOSE, MAX_CLOSE = 0.01, 1e9
CLOSE_RANGE = f"{MIN_CLOSE} to {MAX_CLOSE:,.0f}"


class BenchmarkFileError(SnapshotterError):
    """A benchmark CSV that cannot be imported: nothing of it is stored."""

    exit_code = ExitCode.USAGE


def benchmark_name(text: str) -> str:
    """A benchmark's stored name: trimmed and upper-cased (``nifty50 `` -> ``NIFTY50``),
    as `benchmark import`, `benchmark fetch` and `--benchmark` take it."""
    name = text.strip().upper()
    if not name or not name.isprintable():
        raise BenchmarkFileError(f"benchmark name {text!r}: give a name such as NIFTY50")
    return name


def _closes_frame(dates: pd.Series, closes: pd.Series) -> pd.DataFrame:
    frame = pd.DataFrame({DATE_COLUMN: dates.dt.date, CLOSE_COLUMN: closes.astype("float64")})
    return frame.sort_values(DATE_COLUMN, kind="stable").reset_index(drop=True)


def parse_index_csv(data: bytes, source: str) -> pd.DataFrame:
    """The closes of an NSE-style index CSV (``source``: the file's name, for messages)."""
    if data.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):  # Excel's "Unicode text"
        text = data.decode("utf-16", errors="replace")
    else:
        try:
            text = data.decode("utf-8-sig")
        except UnicodeDecodeError:
            text = data.decode("latin-1")
    rows: list[tuple[int, list[str]]] = []
    reader = csv.reader(io.StringIO(text, newline=""))
    try:
        for row in reader:
            if any(cell.strip() for cell in row):
                rows.append((reader.line_num, row))
    except csv.Error as exc:
        raise BenchmarkFileError(f"{source}: line {reader.line_num}: not CSV ({exc})") from None
    if not rows:
        raise BenchmarkFileError(f"{source}: empty file: expected a header with Date and "
                                 "Close, then one row per date")
    header_line, header = rows[0]
    names = [cell.strip() for cell in header]
    where = {wanted: [i for i, n in enumerate(names) if n.casefold() == wanted]
             for wanted in (DATE_COLUMN, CLOSE_COLUMN)}
    for wanted, found in where.items():
        if len(found) != 1:
            problem = "no" if not found else "more than one"
            raise BenchmarkFileError(
                f"{source}: line {header_line}: {problem} {wanted.capitalize()} column "
                f"(columns: {', '.join(repr(n) for n in names)})")
    date_at, close_at = where[DATE_COLUMN][0], where[CLOSE_COLUMN][0]
    body = rows[1:]
    if not body:
        raise BenchmarkFileError(f"{source}: no rows after the header (line {header_line})")
    frame = pd.DataFrame({
        "line": [line for line, _ in body],
        "date": [row[date_at] if date_at < len(row) else "" for _, row in body],
        "close": [row[close_at] if close_at < len(row) else "" for _, row in body],
    })
    date_label, close_label = names[date_at], names[close_at]

    date_text = frame["date"].str.strip()
    parts = date_text.str.extract(_DAY_MONTH_YEAR)
    iso = date_text.str.extract(_ISO)
    month = parts["month"].str.lower().map(_MONTHS).astype("float64")
    ymd = pd.DataFrame({
        "year": pd.to_numeric(parts["year"].fillna(iso["year"])),
        "month": month.fillna(pd.to_numeric(iso["month"])),
        "day": pd.to_numeric(parts["day"].fillna(iso["day"])),
    })
    dates = pd.to_datetime(ymd, errors="coerce")
    _refuse(frame, dates.isna(), source, date_label, "date",
            lambda value: f"{value!r} is not a date ({DATE_FORMATS})")

    close_text = frame["close"].str.strip()
    closes = pd.to_numeric(close_text.str.replace(",", "", regex=False), errors="coerce")
    _refuse(frame, closes.isna() | ~np.isfinite(closes), source, close_label, "close",
            lambda value: f"{value!r} is not a number")
    _refuse(frame, closes <= 0, source, close_label, "close",
            lambda value: f"{value!r} is not a positive close")
    _refuse(frame, ~closes.between(MIN_CLOSE, MAX_CLOSE), source, close_label, "close",
            lambda value: f"{value!r} is not a plausible close (expected {CLOSE_RANGE})")

    out = pd.DataFrame({"line": frame["line"], "date": dates, "close": closes})
    distinct = out.drop_duplicates(["date", "close"])
    clash = distinct[distinct.duplicated("date", keep=False)]
    if not clash.empty:
        first = clash.iloc[0]
        other = clash[clash["date"] == first["date"]].iloc[1]
        raise BenchmarkFileError(
            f"{source}: lines {first['line']} and {other['line']}: two different closes for "
            f"{first['date'].date()} ({first['close']:,.2f} and {other['close']:,.2f})")
    return _closes_frame(distinct["date"], distinct["close"])


def _refuse(frame: pd.DataFrame, bad: pd.Series, source: str, label: str, column: str,
            problem: Any) -> None:
    """Refuse the file at the first row where ``bad`` holds (naming how many more do)."""
    if not bad.any():
        return
    rows = frame[bad.to_numpy()]
    first = rows.iloc[0]
    more = f" (and {len(rows) - 1} more line(s))" if len(rows) > 1 else ""
    value = first[column]
    what = f"empty (no {column})" if not value.strip() else problem(value)
    raise BenchmarkFileError(f"{source}: line {first['line']}, column {label!r}: {what}{more}")


def closes_from_candles(candles: Any, label: str) -> pd.DataFrame:
    """The closes of Kite's daily candles (``[timestamp, open, high, low, close, volume]``,
    the timestamp in IST such as ``2026-12-01T00:00:00+0530``): the candle's date is the
    timestamp's own date. A candle of another shape, or without a positive close, is a
    ``PayloadError`` naming it (``label``: what was asked, for the message)."""
    if not isinstance(candles, list):
        raise PayloadError(f"{label}: candles is not a list")
    for i, candle in enumerate(candles):
        if not isinstance(candle, list | tuple) or len(candle) < 5 \
                or not isinstance(candle[0], str):
            raise PayloadError(f"{label}: candle {i} is not [timestamp, open, high, low, "
                               f"close, ...]: {str(candle)[:80]}")
    if not candles:
        return _closes_frame(pd.Series([], dtype="datetime64[us]"),
                             pd.Series([], dtype="float64"))
    raw = np.empty((len(candles), 2), dtype=object)
    raw[:, 0] = [c[0] for c in candles]
    raw[:, 1] = [c[4] for c in candles]
    try:  # the payload columns' own rules: no bool, NaN, overflowing number or bad time
        columns = convert(raw, {"timestamp": "datetime", "close": "float"})
    except PayloadError as exc:
        raise PayloadError(f"{label}: {exc}") from None
    dates = pd.Series(columns["timestamp"]).dt.tz_convert(KITE_TZ).dt.tz_localize(None)
    closes = pd.Series(columns["close"]).astype("float64")
    bad = dates.isna() | closes.isna() | (closes <= 0)
    if bad.any():
        i = int(np.flatnonzero(bad.to_numpy())[0])
        raise PayloadError(f"{label}: candle {i} has no date or no positive close: "
                           f"{str(candles[i])[:80]}")
    absurd = ~closes.between(MIN_CLOSE, MAX_CLOSE)
    if absurd.any():
        i = int(np.flatnonzero(absurd.to_numpy())[0])
        raise PayloadError(f"{label}: candle {i} has a close of {float(closes.iloc[i])!r}, not a "
                           f"plausible one (expected {CLOSE_RANGE}); nothing stored")
    frame = pd.DataFrame({"date": dates.dt.normalize(), "close": closes})
    distinct = frame.drop_duplicates(["date", "close"])
    clash = distinct[distinct.duplicated("date", keep=False)]
    if not clash.empty:
        day = clash["date"].iloc[0]
        found = clash.loc[clash["date"] == day, "close"]
        raise PayloadError(f"{label}: two different closes for {day.date()} "
                           f"({found.iloc[0]:,.2f} and {found.iloc[1]:,.2f})")
    return _closes_frame(distinct["date"], distinct["close"])
