"""Whole columns at once: one table's raw values (a 2-D block, a row per record) -> typed
pandas arrays (``snapshotter.rows`` turns them into plain Python rows for the database).

Each kind takes the values JSON gives it as they are (ints for ``int``, ints and finite
floats for ``float``, Kite's ``YYYY-MM-DD HH:MM:SS`` for ``datetime``...) with numpy and
pandas operations over the block. Any other present value (a numeric string, a bool
where a number belongs, NaN...) goes through ``values.CONVERTERS`` one at a time, in
column order, so that the first bad value raises the very message it always did.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date
from itertools import repeat
from typing import Any

import numpy as np
import pandas as pd

from snapshotter.normalize.values import (
    CONVERTERS,
    FLOAT_DECIMALS,
    UNSTORABLE,
)

DATETIME_DTYPE = pd.DatetimeTZDtype("us", "UTC")  # one unit whatever the values
STRING_DTYPE = pd.StringDtype("python")
# Each value's type, as a code: the kinds take values of these types as they are.
_NONE, _STR, _INT, _FLOAT, _BOOL, _OTHER = range(6)
_CODES = {type(None): _NONE, str: _STR, int: _INT, float: _FLOAT, bool: _BOOL}

_strip = np.frompyfunc(str.strip, 1, 1)
_clean = np.frompyfunc(lambda text: UNSTORABLE.sub("\ufffd", text), 1, 1)
_round = np.frompyfunc(round, 2, 1)  # Python's round: correctly rounded, unlike np.round
_iso_date = np.frompyfunc(date.fromisoformat, 1, 1)
_KITE_TIMES = re.compile(r"(?:[0-9]{4}-[0-9]{2}-[0-9]{2} [0-9]{2}:[0-9]{2}:[0-9]{2}\n)*")
_KITE_TIME_LINE = len("2025-01-17 00:00:00\n")
# Asia/Kolkata has been UTC+05:30 since 1945-10-15 (zoneinfo agrees for every later
# wall time); earlier ones go through zoneinfo one at a time.
_FIXED_IST_SINCE = np.datetime64("1946-01-01T00:00:00", "us")
_IST_OFFSET = np.timedelta64(5 * 3600 + 30 * 60, "s")
_NO_TIME = np.datetime64("NaT", "us")
_FILL: dict[str, Any] = {"int": 0, "float": 0.0, "bool": False, "str": None,
                         "datetime": _NO_TIME, "date": None}
_STORAGE: dict[str, Any] = {"int": np.int64, "float": np.float64, "bool": np.bool_,
                            "str": object, "datetime": "datetime64[us]", "date": object}


@dataclass
class _Block:
    """The columns of one kind: values (n x m, column-major) and which were taken."""

    data: np.ndarray
    taken: np.ndarray


def _ints(raw: np.ndarray, types: np.ndarray, present: np.ndarray, block: _Block) -> None:
    block.taken = types == _INT
    try:
        block.data[block.taken] = raw[block.taken].astype(np.int64)
    except OverflowError:  # beyond 64 bits: named by the one-value path
        block.taken[:] = False


def _floats(raw: np.ndarray, types: np.ndarray, present: np.ndarray, block: _Block) -> None:
    where = np.nonzero((types == _FLOAT) | (types == _INT))
    try:
        numbers = raw[where].astype(np.float64)
    except OverflowError:
        return
    block.data[where] = np.asarray(_round(numbers, FLOAT_DECIMALS), dtype=np.float64) + 0.0
    block.taken[where] = np.isfinite(numbers)  # + 0.0 above: a rounded -0.0 is 0.0


def _bools(raw: np.ndarray, types: np.ndarray, present: np.ndarray, block: _Block) -> None:
    block.taken = types == _BOOL
    block.data[block.taken] = raw[block.taken].astype(np.bool_)


def _texts(raw: np.ndarray, types: np.ndarray, present: np.ndarray, block: _Block) -> None:
    block.taken = (types == _STR) & present
    texts = raw[block.taken]
    if UNSTORABLE.search("".join(texts)):
        texts = _clean(texts)
    block.data[block.taken] = texts


def _times(raw: np.ndarray, types: np.ndarray, present: np.ndarray, block: _Block) -> None:
    """Kite's own form, naive IST since IST became a fixed +05:30: parsed by numpy and
    shifted; any other form (ISO with a zone, a date alone, an older wall time...) goes
    to the one-value path (zoneinfo)."""
    where = np.nonzero((types == _STR) & present)
    texts = raw[where]
    lines = "\n".join(texts) + "\n"
    # as many lines as texts: none of them holds a line break of its own
    if len(lines) != len(texts) * _KITE_TIME_LINE or not _KITE_TIMES.fullmatch(lines):
        return
    try:
        wall = texts.astype("datetime64[us]")
    except ValueError:  # a day or time out of range: named by the one-value path
        return
    block.data[where] = wall - _IST_OFFSET
    block.taken[where] = wall >= _FIXED_IST_SINCE


def _dates(raw: np.ndarray, types: np.ndarray, present: np.ndarray, block: _Block) -> None:
    where = np.nonzero((types == _STR) & present)
    try:
        block.data[where] = _iso_date(raw[where])
    except ValueError:
        return
    block.taken[where] = True


_TAKE = {"int": _ints, "float": _floats, "bool": _bools, "str": _texts,
         "datetime": _times, "date": _dates}


def string_array(texts: np.ndarray) -> Any:
    """Text (None for NULL) as a ``string`` column (Python storage: what the database
    takes back out of it costs a tenth of pyarrow's)."""
    return pd.arrays.StringArray(texts, dtype=STRING_DTYPE)  # None -> NA, in ``texts``


def _array(kind: str, data: np.ndarray, missing: np.ndarray) -> Any:
    """One column's pandas array of its kind's dtype."""
    if kind == "int":
        return pd.arrays.IntegerArray(data, missing)
    if kind == "float":
        return pd.arrays.FloatingArray(data, missing)
    if kind == "bool":
        return pd.arrays.BooleanArray(data, missing)
    if kind == "str":
        return string_array(data)
    if kind == "datetime":
        return pd.array(data, dtype=DATETIME_DTYPE)  # naive values are UTC
    return data  # date: Python dates (or None) in an object column


def _stored(kind: str, value: Any) -> Any:
    """A value from the one-value path as its block holds it."""
    if kind == "datetime":
        return np.datetime64(value.tz_convert(None).to_pydatetime(), "us")
    return value


def convert(raw: np.ndarray, columns: Mapping[str, str]) -> dict[str, Any]:
    """``raw`` (records x columns, as the payload had them; None where absent) -> a
    pandas array per column. Blank text is NULL whatever the kind."""
    names, kinds = list(columns), list(columns.values())
    types = np.fromiter(map(_CODES.get, map(type, raw.flat), repeat(_OTHER)), dtype=np.int8,
                        count=raw.size).reshape(raw.shape)
    present = types != _NONE
    texts = types == _STR
    if texts.any():
        blank = np.zeros(raw.shape, dtype=np.bool_)
        blank[texts] = _strip(raw[texts]) == ""
        present &= ~blank
    by_kind: dict[str, list[int]] = {}
    for index, kind in enumerate(kinds):
        by_kind.setdefault(kind, []).append(index)
    blocks: dict[str, _Block] = {}
    taken = np.zeros(raw.shape, dtype=np.bool_)
    for kind, indexes in by_kind.items():
        block = _Block(np.full((len(raw), len(indexes)), _FILL[kind], dtype=_STORAGE[kind],
                               order="F"),
                       np.zeros((len(raw), len(indexes)), dtype=np.bool_))
        _TAKE[kind](raw[:, indexes], types[:, indexes], present[:, indexes], block)
        taken[:, indexes] = block.taken
        blocks[kind] = block
    place = {index: (kinds[index], position) for indexes in by_kind.values()
             for position, index in enumerate(indexes)}
    # The rest, one value at a time, column by column: the first bad one raises.
    for column, row in zip(*np.nonzero((present & ~taken).T), strict=True):
        kind, position = place[int(column)]
        value = CONVERTERS[kind](raw[row, column], names[column])
        blocks[kind].data[row, position] = _stored(kind, value)
    return {names[index]: _array(kind, blocks[kind].data[:, position], ~present[:, index])
            for index, (kind, position) in sorted(place.items())}
