"""Kite payloads -> typed DataFrames. Pure: no clock, no I/O.

Kite's field names are kept. Nested objects are flattened (``mtf.quantity`` ->
``mtf_quantity``; margins' ``available.cash`` -> ``cash``). Every field is optional;
fields we do not know yet are kept, as a dict, in the ``extra`` column (JSON in the
database). Floats are
rounded to 6 decimals to drop float noise (``0.5999999999999659`` -> ``0.6``).

So that both databases store the same thing: NUL characters (and lone UTF-16 surrogates)
in any text become U+FFFD; NaN and +-Infinity inside ``extra`` become JSON null; a key
column longer than ``MAX_KEY_LENGTH`` is a payload error. ``normalize_snapshot`` also
collapses identical duplicate records (a warning), refuses conflicting ones (an error
naming the key) and warns of holdings without a ``last_price``.
"""

from __future__ import annotations

import math
import numbers
import re
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any
from zoneinfo import ZoneInfo

import numpy as np
import pandas as pd

FLOAT_DECIMALS = 6
KITE_TZ = "Asia/Kolkata"  # Kite's timestamps are naive IST strings
_KITE_ZONE = ZoneInfo(KITE_TZ)
DATETIME_DTYPE = "datetime64[us, UTC]"  # one unit whatever the values (or their absence)

# column -> kind; kinds: str, int, float, bool, datetime (naive IST in, aware UTC out), date
HOLDING_FIELDS: dict[str, str] = {
    "tradingsymbol": "str", "exchange": "str", "instrument_token": "int", "isin": "str",
    "product": "str", "price": "float", "quantity": "int", "used_quantity": "int",
    "t1_quantity": "int", "realised_quantity": "int", "authorised_quantity": "int",
    "authorised_date": "datetime", "opening_quantity": "int", "short_quantity": "int",
    "collateral_quantity": "int", "collateral_type": "str", "discrepancy": "bool",
    "average_price": "float", "last_price": "float", "close_price": "float", "pnl": "float",
    "day_change": "float", "day_change_percentage": "float",
}
HOLDING_NESTED: dict[str, dict[str, str]] = {
    "mtf": {"quantity": "int", "used_quantity": "int", "average_price": "float",
            "value": "float", "initial_margin": "float"},
}
POSITION_FIELDS: dict[str, str] = {
    "tradingsymbol": "str", "exchange": "str", "instrument_token": "int", "product": "str",
    "quantity": "int", "overnight_quantity": "int", "multiplier": "float",
    "average_price": "float", "close_price": "float", "last_price": "float", "value": "float",
    "pnl": "float", "m2m": "float", "unrealised": "float", "realised": "float",
    "buy_quantity": "int", "buy_price": "float", "buy_value": "float", "buy_m2m": "float",
    "sell_quantity": "int", "sell_price": "float", "sell_value": "float", "sell_m2m": "float",
    "day_buy_quantity": "int", "day_buy_price": "float", "day_buy_value": "float",
    "day_sell_quantity": "int", "day_sell_price": "float", "day_sell_value": "float",
}
FUNDS_FIELDS: dict[str, str] = {"enabled": "bool", "net": "float"}
FUNDS_AVAILABLE: dict[str, str] = {
    "adhoc_margin": "float", "cash": "float", "opening_balance": "float",
    "live_balance": "float", "collateral": "float", "intraday_payin": "float",
}
FUNDS_UTILISED: dict[str, str] = {
    "debits": "float", "exposure": "float", "m2m_realised": "float", "m2m_unrealised": "float",
    "option_premium": "float", "payout": "float", "span": "float", "holding_sales": "float",
    "turnover": "float", "liquid_collateral": "float", "stock_collateral": "float",
    "delivery": "float",
}
MF_FIELDS: dict[str, str] = {
    "folio": "str", "fund": "str", "tradingsymbol": "str", "average_price": "float",
    "last_price": "float", "last_price_date": "date", "pledged_quantity": "float",
    "pnl": "float", "quantity": "float",
}


def _flat(fields: Mapping[str, str], nested: Mapping[str, Mapping[str, str]]) -> dict[str, str]:
    out = dict(fields)
    for parent, children in nested.items():
        out.update({f"{parent}_{child}": kind for child, kind in children.items()})
    return out


HOLDING_COLUMNS = _flat(HOLDING_FIELDS, HOLDING_NESTED)
POSITION_COLUMNS = {"position_type": "str", **POSITION_FIELDS}
FUNDS_COLUMNS = {"segment": "str", **FUNDS_FIELDS, **FUNDS_AVAILABLE, **FUNDS_UTILISED}
MF_COLUMNS = dict(MF_FIELDS)

_DTYPES: dict[str, Any] = {"str": "string", "int": "Int64", "float": "Float64",
                           "bool": "boolean", "datetime": DATETIME_DTYPE, "date": object}


# table -> the columns that identify a record within one account snapshot (the tables'
# unique constraints, with account and snapshot_date)
NATURAL_KEYS: dict[str, tuple[str, ...]] = {
    "holdings": ("exchange", "tradingsymbol"),
    "positions": ("position_type", "exchange", "tradingsymbol", "product"),
    "funds": ("segment",),
    "mf_holdings": ("folio", "tradingsymbol"),
}
# Key columns are indexed: PostgreSQL refuses an index entry over ~2700 bytes, SQLite
# takes anything; one limit, well above any real symbol, keeps both the same.
MAX_KEY_LENGTH = 256


class PayloadError(ValueError):
    """A payload that cannot be read as Kite's documented shape."""


_UNSTORABLE = re.compile("[\x00\ud800-\udfff]")


def clean_text(text: str) -> str:
    """NUL (PostgreSQL text cannot hold it) and lone surrogates (not UTF-8) -> U+FFFD."""
    return _UNSTORABLE.sub("\ufffd", text)


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


def _split(record: Mapping[str, Any], fields: Mapping[str, str],
           nested: Mapping[str, Mapping[str, str]]) -> tuple[dict[str, Any], dict[str, Any]]:
    """Known fields (flattened) and the unknown rest of one record.

    Unknown values are copied (``clean_json``) so that the frame never shares objects
    with the payload.
    """
    row: dict[str, Any] = {}
    extra: dict[str, Any] = {}
    for key, value in record.items():
        if key in fields:
            row[key] = value
        elif key in nested and value is None:
            continue  # a known object that is absent: its columns stay NA
        elif key in nested and isinstance(value, Mapping):
            unknown = {}
            for child, child_value in value.items():
                if child in nested[key]:
                    row[f"{key}_{child}"] = child_value
                else:
                    unknown[child] = clean_json(child_value)
            if unknown:
                extra[clean_text(str(key))] = unknown
        else:
            extra[clean_text(str(key))] = clean_json(value)
    return row, extra


def _blank_to_none(value: Any) -> Any:
    return None if value is None or (isinstance(value, str) and not value.strip()) else value


_NUMERIC_TEXT = re.compile(r"[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?")
_INT64_MIN, _INT64_MAX = -(2**63), 2**63 - 1


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
    if not _INT64_MIN <= number <= _INT64_MAX:
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
        moment = moment.replace(tzinfo=_KITE_ZONE)
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


def _column(values: list[Any], kind: str, name: str) -> pd.Series:
    convert = _CONVERTERS[kind]
    return pd.Series([None if v is None else convert(v, name)
                      for v in map(_blank_to_none, values)], dtype=_DTYPES[kind])


def _boolean(value: Any, name: str) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, int | float) and value in (0, 1):
        return bool(value)
    if isinstance(value, str) and value.lower() in ("true", "false", "1", "0"):
        return value.lower() in ("true", "1")
    raise PayloadError(f"field {name}: not a boolean: {value!r}")


_CONVERTERS: dict[str, Callable[[Any, str], Any]] = {
    "str": _text, "bool": _boolean, "int": _integer, "float": _float,
    "datetime": _timestamp, "date": _day,
}


def _frame(rows: list[dict[str, Any]], extras: list[dict[str, Any]], columns: Mapping[str, str],
           account: str, snapshot_date: date) -> pd.DataFrame:
    data: dict[str, pd.Series] = {
        "account": pd.Series([account] * len(rows), dtype="string"),
        "snapshot_date": pd.Series([snapshot_date] * len(rows), dtype=object),
    }
    for name, kind in columns.items():
        data[name] = _column([row.get(name) for row in rows], kind, name)
    data["extra"] = pd.Series([e or None for e in extras], dtype=object)
    return pd.DataFrame(data)


def _records(raw: Any, what: str) -> list[Mapping[str, Any]]:
    if raw is None:
        return []
    if not isinstance(raw, list) or not all(isinstance(r, Mapping) for r in raw):
        raise PayloadError(f"{what}: expected a list of objects, got {type(raw).__name__}")
    return raw


def _split_all(records: Iterable[Mapping[str, Any]], fields: Mapping[str, str],
               nested: Mapping[str, Mapping[str, str]] | None = None,
               ) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    rows, extras = [], []
    for record in records:
        row, extra = _split(record, fields, nested or {})
        rows.append(row)
        extras.append(extra)
    return rows, extras


def normalize_holdings(raw: Any, account: str, snapshot_date: date) -> pd.DataFrame:
    rows, extras = _split_all(_records(raw, "holdings"), HOLDING_FIELDS, HOLDING_NESTED)
    return _frame(rows, extras, HOLDING_COLUMNS, account, snapshot_date)


def normalize_positions(raw: Any, account: str, snapshot_date: date) -> pd.DataFrame:
    if raw is None:
        raw = {}
    if not isinstance(raw, Mapping):
        raise PayloadError(f"positions: expected an object with net and day, got "
                           f"{type(raw).__name__}")
    rows: list[dict[str, Any]] = []
    extras: list[dict[str, Any]] = []
    for position_type in ("net", "day"):
        r, e = _split_all(_records(raw.get(position_type), f"positions.{position_type}"),
                          POSITION_FIELDS)
        for row in r:
            row["position_type"] = position_type
        rows += r
        extras += e
    return _frame(rows, extras, POSITION_COLUMNS, account, snapshot_date)


def normalize_margins(raw: Any, account: str, snapshot_date: date) -> pd.DataFrame:
    if raw is None:
        raw = {}
    if not isinstance(raw, Mapping):
        raise PayloadError(f"margins: expected an object keyed by segment, got "
                           f"{type(raw).__name__}")
    rows: list[dict[str, Any]] = []
    extras: list[dict[str, Any]] = []
    for segment in sorted(raw):
        body = raw[segment]
        if not isinstance(body, Mapping):
            raise PayloadError(f"margins.{segment}: expected an object")
        row, extra = _split(body, {**FUNDS_FIELDS, "available": "", "utilised": ""}, {})
        row.pop("available", None)
        row.pop("utilised", None)
        for part, known in (("available", FUNDS_AVAILABLE), ("utilised", FUNDS_UTILISED)):
            leaves = body.get(part) or {}
            if not isinstance(leaves, Mapping):
                raise PayloadError(f"margins.{segment}.{part}: expected an object")
            unknown = {}
            for leaf, value in leaves.items():
                if leaf in known:
                    row[leaf] = value
                else:
                    unknown[leaf] = clean_json(value)
            if unknown:
                extra[part] = unknown
        row["segment"] = str(segment)
        rows.append(row)
        extras.append(extra)
    return _frame(rows, extras, FUNDS_COLUMNS, account, snapshot_date)


def normalize_mf_holdings(raw: Any, account: str, snapshot_date: date) -> pd.DataFrame:
    rows, extras = _split_all(_records(raw, "mf_holdings"), MF_FIELDS)
    return _frame(rows, extras, MF_COLUMNS, account, snapshot_date)


NORMALIZERS = {
    "holdings": normalize_holdings,
    "positions": normalize_positions,
    "margins": normalize_margins,
    "mf_holdings": normalize_mf_holdings,
}
# payload name -> table name
TABLES = {"holdings": "holdings", "positions": "positions", "margins": "funds",
          "mf_holdings": "mf_holdings"}


def _plain(value: Any) -> Any:
    if value is None or value is pd.NA or value is pd.NaT:
        return None
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, pd.Timestamp):
        return value.to_pydatetime()
    if isinstance(value, np.generic):
        return value.item()
    return value


def frame_records(frame: pd.DataFrame) -> list[dict[str, Any]]:
    """DataFrame -> plain Python rows (NA -> None, numpy scalars -> Python scalars)."""
    if frame.empty:
        return []
    names = list(frame.columns)
    columns = [[_plain(v) for v in frame[name].tolist()] for name in names]
    return [dict(zip(names, row, strict=True)) for row in zip(*columns, strict=True)]


ROUTES = {table: name for name, table in TABLES.items()}  # table name -> payload name


def _shown(value: Any, limit: int = 40) -> str:
    text = "?" if value is None else str(value)
    return text if len(text) <= limit else text[:limit] + "..."


def record_label(table: str, row: Mapping[str, Any]) -> str:
    """How a message names one record: its route and natural key (``holdings NSE:INFY``)."""
    def get(name: str) -> str:
        return _shown(row.get(name))

    if table == "holdings":
        return f"holdings {get('exchange')}:{get('tradingsymbol')}"
    if table == "positions":
        return (f"positions {get('position_type')} {get('exchange')}:{get('tradingsymbol')} "
                f"{get('product')}")
    if table == "funds":
        return f"margins {get('segment')}"
    return f"mf_holdings {get('tradingsymbol')} (folio {get('folio')})"


def _plural(field: str) -> str:
    return field[:-1] + "ies" if field.endswith("y") else field + "s"


def _check_key_lengths(table: str, rows: list[dict[str, Any]]) -> None:
    for number, row in enumerate(rows, start=1):
        for column in NATURAL_KEYS[table]:
            value = row.get(column)
            if isinstance(value, str) and len(value) > MAX_KEY_LENGTH:
                raise PayloadError(
                    f"{ROUTES[table]} record {number} ({record_label(table, row)}): "
                    f"{column} is {len(value)} characters long, more than the "
                    f"{MAX_KEY_LENGTH} a key column holds")


def _deduplicate(table: str, frame: pd.DataFrame, rows: list[dict[str, Any]],
                 account: str) -> tuple[pd.DataFrame, list[str]]:
    """Identical records listed more than once: kept once, with a warning. Records that
    share a natural key but differ: a PayloadError naming the key and the first field
    that differs. A key with a NULL part is no key (the databases' unique constraints
    let such rows be)."""
    first: dict[tuple[Any, ...], int] = {}
    repeats: Counter[int] = Counter()
    dropped: set[int] = set()
    for index, row in enumerate(rows):
        key = tuple(row[column] for column in NATURAL_KEYS[table])
        if any(part is None for part in key):
            continue
        seen = first.setdefault(key, index)
        if seen == index:
            continue
        if row != rows[seen]:
            field = next(c for c in frame.columns if row[c] != rows[seen][c])
            raise PayloadError(f"{record_label(table, row)} twice with different "
                               f"{_plural(field)}")
        repeats[seen] += 1
        dropped.add(index)
    if not dropped:
        return frame, []
    warnings = [f"account {account}: {record_label(table, rows[index])} listed "
                f"{count + 1} times, identical (stored once)"
                for index, count in repeats.items()]
    keep = [i for i in range(len(rows)) if i not in dropped]
    return frame.iloc[keep].reset_index(drop=True), warnings


def _missing_prices(table: str, rows: list[dict[str, Any]], account: str) -> list[str]:
    """Holdings without a last_price: stored NULL, valued by the views at close_price
    (MF holdings, which have no close, at average_price)."""
    fallback = "close_price" if table == "holdings" else "average_price"
    warnings = []
    for row in rows:
        if row.get("last_price") is None:
            basis = f"valued at {fallback}" if row.get(fallback) is not None \
                else f"no {fallback} either: valued at 0"
            warnings.append(f"account {account}: {record_label(table, row)} has no "
                            f"last_price ({basis})")
    return warnings


@dataclass(frozen=True)
class Normalized:
    frames: dict[str, pd.DataFrame]
    warnings: tuple[str, ...]  # one plain sentence each, naming account, route and record


def normalize_snapshot(payloads: Mapping[str, Any], account: str,
                       snapshot_date: date) -> Normalized:
    """Every payload of one account snapshot -> {table name: DataFrame}, and the
    warnings about answers that parse but look wrong."""
    frames: dict[str, pd.DataFrame] = {}
    warnings: list[str] = []
    for name, normalizer in NORMALIZERS.items():
        table = TABLES[name]
        try:
            frame = normalizer(payloads.get(name), account, snapshot_date)
            rows = frame_records(frame)
            _check_key_lengths(table, rows)
            frame, duplicates = _deduplicate(table, frame, rows, account)
        except PayloadError as exc:
            message = str(exc)  # some messages already start with the payload's name
            if not message.startswith(name):
                message = f"{name}: {message}"
            raise PayloadError(message) from exc
        frames[table] = frame
        warnings += duplicates
        if table in ("holdings", "mf_holdings"):
            warnings += _missing_prices(table, frame_records(frame), account)
    return Normalized(frames, tuple(warnings))


def normalize_all(payloads: Mapping[str, Any], account: str,
                  snapshot_date: date) -> dict[str, pd.DataFrame]:
    """Every payload of one account snapshot -> {table name: DataFrame}."""
    return normalize_snapshot(payloads, account, snapshot_date).frames
