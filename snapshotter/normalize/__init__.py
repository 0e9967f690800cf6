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

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date
from itertools import chain
from typing import Any

import numpy as np
import pandas as pd

from snapshotter import routes
from snapshotter.normalize.checks import (
    MAX_KEY_LENGTH,
    check_key_lengths,
    deduplicate,
    duplicated_rows,
    record_label,
    unpriced,
    unpriced_records,
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
from snapshotter.rows import TableColumns, TablePart, TableRows, frame_records, plain_column

__all__ = [
    "DATETIME_DTYPE", "FLOAT_DECIMALS", "KITE_TZ", "MAX_KEY_LENGTH", "NATURAL_KEYS",
    "TABLE_BY_PAYLOAD", "Normalized", "PayloadError", "TableColumns",
    "TableRows", "clean_json", "clean_text", "frame_records", "normalize_all",
    "normalize_route", "normalize_snapshot", "normalize_snapshots", "plain_column",
    "record_label",
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
    tables: Mapping[str, TableColumns | TablePart]  # table name -> its rows, for the store
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


def normalize_snapshots(snapshots: Sequence[tuple[Mapping[str, Any], str]],
                        snapshot_date: date) -> list[Normalized | None]:
    """``normalize_snapshot`` of several accounts' payloads (payloads, account) of one
    session, in one pass: each table's columns are converted once for all of them, and
    each account's rows are a part of them (``TablePart``). None for an account whose
    answers need ``normalize_snapshot`` on its own, to name the record at fault as it
    always does: a payload error, or records listed twice (then, when a table's
    conversion fails, for every account)."""
    if not snapshots:
        return []
    accounts = [account for _, account in snapshots]
    alone: set[int] = set()
    blocks: list[list[tuple[Any, list[Any]]]] = []
    for index, (payloads, _) in enumerate(snapshots):
        try:
            blocks.append([read(route, payloads.get(route.name)) for route in routes.ROUTES])
        except PayloadError:
            alone.add(index)
            blocks.append([])
    kept = [i for i in range(len(snapshots)) if i not in alone]
    tables: dict[str, list[TablePart]] = {}
    warnings: dict[int, list[str]] = {i: [] for i in kept}
    for position, route in enumerate(routes.ROUTES):
        parts = [blocks[i][position] for i in kept]
        lengths = np.array([len(extras) for _, extras in parts], dtype=np.intp)
        width = len(route.columns)
        block = np.concatenate([b for b, _ in parts]) if parts \
            else np.empty((0, width), dtype=object)
        owners = np.repeat(np.array(kept, dtype=np.intp), lengths)
        try:
            columns = {
                "account": string_array(np.array(accounts, dtype=object)[owners]),
                "snapshot_date": np.full(len(block), snapshot_date, dtype=object),
                **convert(block, route.columns),
                "extra": np.fromiter(chain.from_iterable(e for _, e in parts), dtype=object,
                                     count=len(block)),
            }
            check_key_lengths(route, columns)
        except PayloadError:
            return [None] * len(snapshots)
        alone.update(int(owners[row]) for row in duplicated_rows(route, columns, owners))
        for row, text in unpriced_records(route, columns):
            warnings[int(owners[row])].append(f"account {accounts[owners[row]]}: {text}")
        whole = TableColumns.of(columns)
        stops = np.cumsum(lengths)
        tables[route.table] = [TablePart(whole, int(stop - length), int(stop))
                               for stop, length in zip(stops, lengths, strict=True)]
    found: list[Normalized | None] = [None] * len(snapshots)
    for place, index in enumerate(kept):
        if index not in alone:
            found[index] = Normalized({table: parts[place] for table, parts in tables.items()},
                                      tuple(warnings[index]))
    return found


def normalize_all(payloads: Mapping[str, Any], account: str,
                  snapshot_date: date) -> dict[str, pd.DataFrame]:
    """Every payload of one account snapshot -> {table name: DataFrame}."""
    return normalize_snapshot(payloads, account, snapshot_date).frames
