"""Checks of one table's records that look at more than one value: key lengths,
duplicate records, holdings without a price. On the table's columns (name -> array, as
``columns.convert`` gives them, before they become a frame); a record is spelled out
only to name it in a message, or to compare records that share a key."""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from typing import Any

import numpy as np

from snapshotter.normalize.values import PayloadError
from snapshotter.routes import BY_TABLE, Route
from snapshotter.rows import plain_column, plain_row, records

# Key columns are indexed: PostgreSQL refuses an index entry over ~2700 bytes, SQLite
# takes anything; one limit, well above any real symbol, keeps both the same.
MAX_KEY_LENGTH = 256

_length = np.frompyfunc(len, 1, 1)


def _shown(value: Any, limit: int = 40) -> str:
    text = "?" if value is None else str(value)
    return text if len(text) <= limit else text[:limit] + "..."


class _Shown:
    def __init__(self, row: Mapping[str, Any]) -> None:
        self.row = row

    def __getitem__(self, name: str) -> str:
        return _shown(self.row.get(name))


def record_label(table: str, row: Mapping[str, Any]) -> str:
    """How a message names one record: its route and natural key (``holdings NSE:INFY``)."""
    return BY_TABLE[table].label.format_map(_Shown(row))


def _plural(field: str) -> str:
    return field[:-1] + "ies" if field.endswith("y") else field + "s"


Columns = dict[str, Any]


def check_key_lengths(route: Route, columns: Columns) -> None:
    """A key value longer than MAX_KEY_LENGTH: a PayloadError naming the first record
    (in record order) that has one."""
    keys = route.natural_key
    too_long = np.zeros((len(columns[keys[0]]), len(keys)), dtype=np.bool_)
    for position, column in enumerate(keys):
        values = plain_column(columns[column])
        present = values != None  # noqa: E711 (elementwise)
        too_long[present, position] = _length(values[present]) > MAX_KEY_LENGTH
    if not too_long.any():
        return
    row, position = (int(i) for i in np.argwhere(too_long)[0])
    record = plain_row(columns, row, keys)
    column = keys[position]
    raise PayloadError(
        f"{route.name} record {row + 1} ({record_label(route.table, record)}): "
        f"{column} is {len(record[column])} characters long, more than the "
        f"{MAX_KEY_LENGTH} a key column holds")


def deduplicate(route: Route, columns: Columns, account: str) -> tuple[Columns, list[str]]:
    """Identical records listed more than once: kept once, with a warning. Records that
    share a natural key but differ: a PayloadError naming the key and the first field
    that differs. A key with a NULL part is no key (the databases' unique constraints
    let such rows be)."""
    keys = list(zip(*(plain_column(columns[c]) for c in route.natural_key), strict=True))
    if len(set(keys)) == len(keys):
        return columns, []
    rows = records(list(columns), list(columns.values()))
    first: dict[tuple[Any, ...], int] = {}
    repeats: Counter[int] = Counter()
    dropped: set[int] = set()
    for index, (key, row) in enumerate(zip(keys, rows, strict=True)):
        if any(part is None for part in key):
            continue
        seen = first.setdefault(key, index)
        if seen == index:
            continue
        if row != rows[seen]:
            field = next(c for c in columns if row[c] != rows[seen][c])
            raise PayloadError(f"{record_label(route.table, row)} twice with different "
                               f"{_plural(field)}")
        repeats[seen] += 1
        dropped.add(index)
    if not dropped:
        return columns, []
    warnings = [f"account {account}: {record_label(route.table, rows[index])} listed "
                f"{count + 1} times, identical (stored once)"
                for index, count in repeats.items()]
    keep = [i for i in range(len(rows)) if i not in dropped]
    return {name: array.take(keep) for name, array in columns.items()}, warnings


def unpriced(route: Route, columns: Columns, account: str) -> list[str]:
    """Records without a last_price: stored NULL, valued by the views at the route's
    fallback (holdings at close_price, MF holdings, which have no close, at
    average_price)."""
    return [f"account {account}: {text}" for _, text in unpriced_records(route, columns)]


def unpriced_records(route: Route, columns: Columns) -> list[tuple[int, str]]:
    """``unpriced``'s records: (row, what the warning says of it after the account)."""
    fallback = route.unpriced_fallback
    if fallback is None:
        return []
    found = []
    for row in np.flatnonzero(np.asarray(columns["last_price"].isna())):
        record = plain_row(columns, int(row), (*route.natural_key, fallback))
        basis = f"valued at {fallback}" if record[fallback] is not None \
            else f"no {fallback} either: valued at 0"
        found.append((int(row), f"{record_label(route.table, record)} has no last_price "
                                f"({basis})"))
    return found


def duplicated_rows(route: Route, columns: Columns, owners: np.ndarray) -> np.ndarray:
    """The rows whose natural key another row of the same owner (``owners``: one per
    row) shares; keys with a NULL part share nothing (as in ``deduplicate``)."""
    keys = list(zip(owners, *(plain_column(columns[c]) for c in route.natural_key),
                    strict=True))
    if len(set(keys)) == len(keys):
        return np.zeros(0, dtype=np.intp)
    counts = Counter(key for key in keys if None not in key)
    return np.array([row for row, key in enumerate(keys) if counts.get(key, 0) > 1],
                    dtype=np.intp)
