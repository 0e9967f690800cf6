"""One value at a time: what each column kind accepts, and the message naming a value it
refuses. ``columns`` converts whole columns and hands these functions only the values
its column operations do not take as they are (text in number columns, bad values...),
so that a bad value is named the same way whatever the path.

So that both databases store the same thing: NUL characters (and lone UTF-16 surrogates)
in any text become U+FFFD; NaN and +-Infinity inside ``extra`` become JSON null.
"""

from __future__ import annotations

import math
import numbers
import re
from collections.abc import Callable, Mapping
from datetime import UTC, date, datetime
from typing import Any
from zoneinfo import ZoneInfo

import pandas as pd

from snapshotter.errors import PayloadError

FLOAT_DECIMALS = 6
KITE_TZ = "Asia/Kolkata"  # Kite's timestamps are naive IST strings
KITE_ZONE = ZoneInfo(KITE_TZ)


UNSTORABLE = re.compile("[\x00\ud800-\udfff]")


def clean_text(text: str) -> str:
    """NUL (PostgreSQL text cannot hold it) and lone surrogates (not UTF-8) -> U+FFFD."""
    return UNSTORABLE.sub("\ufffd", text)


def clean_json(value: Any) -> Any:
    """A copy of a JSON value that every database stores as valid JSON: NaN and
    +-Infinity -> null, text (keys too) through ``clean_text``."""
    if isinstance(value, str):
        return clean_text(value)
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, Mapping):
        return {clean_text(str(k)): clean_json(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [clean_json(v) for v in value]
    return value


_NUMERIC_TEXT = re.compile(r"[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?")
INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1


def _number(value: Any, name: str) -> int | float:
    """One JSON number (or a plain numeric string) -> int or finite float."""
    if isinstance(value, str) and _NUMERIC_TEXT.fullmatch(value.strip()):
        text = value.strip()
        try:
            return int(text)
        except ValueError:
            value = float(text)
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise PayloadError(f"field {name}: not a number: {value!r}")
    if isinstance(value, numbers.Integral):
        return int(value)
    number = float(value)
    if not math.isfinite(number):
        raise PayloadError(f"field {name}: not a finite number: {value!r}")
    return number


def _integer(value: Any, name: str) -> int:
    number = _number(value, name)
    if isinstance(number, float):
        if not number.is_integer():
            raise PayloadError(f"field {name}: expected a whole number, got {value!r}")
        number = int(number)
    if not INT64_MIN <= number <= INT64_MAX:
        raise PayloadError(f"field {name}: out of the 64-bit integer range: {value!r}")
    return number


def _float(value: Any, name: str) -> float:
    try:
        number = float(_number(value, name))
    except OverflowError:
        raise PayloadError(f"field {name}: number too large: {value!r}") from None
    # round() drops float noise; + 0.0 turns a rounded -0.0 into 0.0
    return round(number, FLOAT_DECIMALS) + 0.0


def _timestamp(value: Any, name: str) -> pd.Timestamp:
    """Naive timestamps are Kite's IST; aware ones keep their zone. Out: aware UTC."""
    moment = value
    if isinstance(value, str):
        try:
            moment = datetime.fromisoformat(value.strip())
        except ValueError:
            raise PayloadError(f"field {name}: not a timestamp: {value!r}") from None
    if not isinstance(moment, datetime):
        raise PayloadError(f"field {name}: not a timestamp: {value!r}")
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=KITE_ZONE)
    try:  # in Python's datetime, so that a result outside years 1-9999 raises
        return pd.Timestamp(moment.astimezone(UTC))
    except (ValueError, OverflowError):
        raise PayloadError(f"field {name}: timestamp out of range: {value!r}") from None


def _day(value: Any, name: str) -> date:
    if isinstance(value, datetime):
        return value.date()
    if isinstance(value, date):
        return value
    if isinstance(value, str):
        text = value.strip()
        for parse in (date.fromisoformat, lambda t: datetime.fromisoformat(t).date()):
            try:
                return parse(text)
            except ValueError:
                pass
    raise PayloadError(f"field {name}: not a date: {value!r}")


def _text(value: Any, name: str) -> str:
    return clean_text(str(value))


def _boolean(value: Any, name: str) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, int | float) and value in (0, 1):
        return bool(value)
    if isinstance(value, str) and value.lower() in ("true", "false", "1", "0"):
        return value.lower() in ("true", "1")
    raise PayloadError(f"field {name}: not a boolean: {value!r}")


# kind -> one present (not blank) value -> its stored value, or a PayloadError
CONVERTERS: dict[str, Callable[[Any, str], Any]] = {
    "str": _text, "bool": _boolean, "int": _integer, "float": _float,
    "datetime": _timestamp, "date": _day,
}
