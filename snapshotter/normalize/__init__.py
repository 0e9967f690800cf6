"""Kite payloads -> typed DataFrames. Pure: no clock, no I/O.

Every route's columns come from ``snapshotter.routes``. Kite's field names are kept.
Nested objects are flattened (``mtf.quantity`` -> ``mtf_quantity``; margins'
``available.cash`` -> ``cash``). Every field is optional; fields we do not know yet are
kept, as a dict, in the ``extra`` column (JSON in the database). Floats are rounded to 6
decimals to drop float noise (``0.5999999999999659`` -> ``0.6``).

So that both databases store the same thing: NUL characters (and lone UTF-16 surrogates)
in any text become U+FFFD; NaN and +-Infinity inside ``extra`` become JSON null; a key
column longer than ``MAX_KEY_LENGTH`` is a payload error. ``normalize_snapshot`` also
collapses identical duplicate records (a warning), refuses conflicting ones (an error
naming the key) and warns of holdings without a ``last_price``.

Each table's columns are built once, from all its records, with column operations
(``columns``); values are taken one at a time only where they are not what JSON gives
for their kind (``values``). ``normalize_snapshot`` gives the store each table as
``TableColumns`` (names and typed arrays); ``normalize_route``, ``normalize_all`` and
``Normalized.frames`` give DataFrames of the same columns and dtypes.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date
from typing import Any

import numpy as np
import pandas as pd

from snapshotter import routes
from snapshotter.normalize.checks import (
    MAX_KEY_LENGTH,
    check_key_lengths,
    deduplicate,
    record_label,
    unpriced,
)
from snapshotter.normalize.columns import DATETIME_DTYPE, convert, string_array
from snapshotter.normalize.records import read
from snapshotter.normalize.values import (
    FLOAT_DECIMALS,
    KITE_TZ,
    PayloadError,
    clean_json,
    clean_text,
)
from snapshotter.routes import Route
from snapshotter.rows import TableColumns, TableRows, frame_records, plain_column

__all__ = [
    "DATETIME_DTYPE", "FLOAT_DECIMALS", "KITE_TZ", "MAX_KEY_LENGTH", "NATURAL_KEYS",
    "TABLE_BY_PAYLOAD", "Normalized", "PayloadError", "TableColumns",
    "TableRows", "clean_json", "clean_text", "frame_records", "normalize_all",
    "normalize_route", "normalize_snapshot", "plain_column", "record_label",
]

# table -> the columns that identify a record within one account snapshot (the tables'
# unique constraints, with account and snapshot_date)
NATURAL_KEYS: dict[str, tuple[str, ...]] = {r.table: r.natural_key for r in routes.ROUTES}
TABLE_BY_PAYLOAD: dict[str, str] = {r.name: r.table for r in routes.ROUTES}


def _columns(route: Route, raw: Any, account: str, snapshot_date: date) -> dict[str, Any]:
    """One route's payload -> its table's columns (name -> array)."""
    block, extras = read(route, raw)
    count = len(extras)
    columns = convert(block, route.columns)
    return {
        "account": string_array(np.full(count, account, dtype=object)),
        "snapshot_date": np.full(count, snapshot_date, dtype=object),
        **columns,
        "extra": np.fromiter(extras, dtype=object, count=count),
    }


def normalize_route(route: Route, raw: Any, account: str, snapshot_date: date) -> pd.DataFrame:
    """One route's payload -> its table's rows: ``account``, ``snapshot_date``, the
    route's columns, ``extra``."""
    return TableColumns.of(_columns(route, raw, account, snapshot_date)).frame()


@dataclass(frozen=True)
class Normalized:
    tables: dict[str, TableColumns]  # table name -> its rows, what the store takes
    warnings: tuple[str, ...]  # one plain sentence each, naming account, route and record

    @property
    def frames(self) -> dict[str, pd.DataFrame]:
        return {name: table.frame() for name, table in self.tables.items()}


def normalize_snapshot(payloads: Mapping[str, Any], account: str,
                       snapshot_date: date) -> Normalized:
    """Every payload of one account snapshot -> {table name: its columns}, and the
    warnings about answers that parse but look wrong."""
    tables: dict[str, TableColumns] = {}
    warnings: list[str] = []
    for route in routes.ROUTES:
        try:
            columns = _columns(route, payloads.get(route.name), account, snapshot_date)
            check_key_lengths(route, columns)
            columns, duplicates = deduplicate(route, columns, account)
        except PayloadError as exc:
            message = str(exc)  # some messages already start with the payload's name
            if not message.startswith(route.name):
                message = f"{route.name}: {message}"
            raise PayloadError(message) from exc
        tables[route.table] = TableColumns.of(columns)
        warnings += duplicates
        warnings += unpriced(route, columns, account)
    return Normalized(tables, tuple(warnings))


def normalize_all(payloads: Mapping[str, Any], account: str,
                  snapshot_date: date) -> dict[str, pd.DataFrame]:
    """Every payload of one account snapshot -> {table name: DataFrame}."""
    return normalize_snapshot(payloads, account, snapshot_date).frames
