"""Kite payloads -> typed DataFrames. Pure: no clock, no I/O.

Kite's field names are kept. Nested objects are flattened (``mtf.quantity`` ->
``mtf_quantity``; margins' ``available.cash`` -> ``cash``). Every field is optional;
fields we do not know yet are kept, as a dict, in the ``extra`` column (JSON in the
database). Floats are
rounded to 6 decimals to drop float noise (``0.5999999999999659`` -> ``0.6``).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import date
from typing import Any

import pandas as pd

FLOAT_DECIMALS = 6
KITE_TZ = "Asia/Kolkata"  # Kite's timestamps are naive IST strings

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

_DTYPES = {"str": "string", "int": "Int64", "float": "Float64", "bool": "boolean"}


class PayloadError(ValueError):
    """A payload that cannot be read as Kite's documented shape."""


def _split(record: Mapping[str, Any], fields: Mapping[str, str],
           nested: Mapping[str, Mapping[str, str]]) -> tuple[dict[str, Any], dict[str, Any]]:
    """Known fields (flattened) and the unknown rest of one record."""
    row: dict[str, Any] = {}
    extra: dict[str, Any] = {}
    for key, value in record.items():
        if key in fields:
            row[key] = value
        elif key in nested and isinstance(value, Mapping):
            unknown = {}
            for child, child_value in value.items():
                if child in nested[key]:
                    row[f"{key}_{child}"] = child_value
                else:
                    unknown[child] = child_value
            if unknown:
                extra[key] = unknown
        else:
            extra[key] = value
    return row, extra


def _blank_to_none(value: Any) -> Any:
    return None if value is None or (isinstance(value, str) and not value.strip()) else value


def _column(values: list[Any], kind: str, name: str) -> pd.Series:
    values = [_blank_to_none(v) for v in values]
    if kind == "str":
        return pd.Series([None if v is None else str(v) for v in values], dtype="string")
    if kind == "bool":
        return pd.Series([None if v is None else _boolean(v, name) for v in values],
                         dtype="boolean")
    if kind in ("int", "float"):
        numbers = pd.to_numeric(pd.Series(values, dtype=object), errors="coerce")
        bad = [v for v, n in zip(values, numbers, strict=True) if v is not None and pd.isna(n)]
        if bad:
            raise PayloadError(f"field {name}: not a number: {bad[0]!r}")
        if kind == "float":
            return numbers.astype("Float64").round(FLOAT_DECIMALS)
        if ((numbers.dropna() % 1) != 0).any():
            raise PayloadError(f"field {name}: expected whole numbers, got {list(numbers)!r}")
        return numbers.astype("Float64").astype("Int64")
    if kind == "datetime":
        parsed = pd.to_datetime(pd.Series(values, dtype=object), errors="coerce",
                                format="%Y-%m-%d %H:%M:%S")
        return parsed.dt.tz_localize(KITE_TZ).dt.tz_convert("UTC")
    if kind == "date":
        parsed = pd.to_datetime(pd.Series(values, dtype=object), errors="coerce", format="mixed")
        return pd.Series([None if pd.isna(v) else v.date() for v in parsed], dtype=object)
    raise AssertionError(kind)


def _boolean(value: Any, name: str) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, int | float):
        return bool(value)
    if isinstance(value, str) and value.lower() in ("true", "false", "1", "0"):
        return value.lower() in ("true", "1")
    raise PayloadError(f"field {name}: not a boolean: {value!r}")


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
                    unknown[leaf] = value
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


def normalize_all(payloads: Mapping[str, Any], account: str,
                  snapshot_date: date) -> dict[str, pd.DataFrame]:
    """Every payload of one account snapshot -> {table name: DataFrame}."""
    out = {}
    for name, normalizer in NORMALIZERS.items():
        try:
            out[TABLES[name]] = normalizer(payloads.get(name), account, snapshot_date)
        except PayloadError as exc:
            raise PayloadError(f"{name}: {exc}") from None
    return out
