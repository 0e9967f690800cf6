"""Reading the views into frames for the reports: the filters every report takes (accounts
and a window of sessions) as SQL, and a query's rows as a typed DataFrame."""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import date
from decimal import Decimal
from typing import Any

import pandas as pd
import sqlalchemy as sa

#: what a report reads through: an engine (a connection of its own per query), or one
#: connection whose transaction every query shares (the dashboard's consistent snapshot)
Bind = sa.Engine | sa.Connection


@contextmanager
def connection(bind: Bind) -> Iterator[sa.Connection]:
    """``bind`` itself when it is a connection (left open), else a new one of the engine."""
    if isinstance(bind, sa.Connection):
        yield bind
        return
    with bind.connect() as conn:
        yield conn


@dataclass(frozen=True)
class Filters:
    """Which rows a report reads: these accounts (none: all) and sessions from ``start``
    to ``end`` (both included; None: unbounded)."""

    accounts: tuple[str, ...] = ()
    start: date | None = None
    end: date | None = None


def filter_sql(filters: Filters, date_column: str = "snapshot_date",
               alias: str = "") -> tuple[str, dict[str, Any]]:
    """``filters`` as a WHERE condition on ``alias``'s columns, and its parameters."""
    prefix = f"{alias}." if alias else ""
    clauses: list[str] = []
    params: dict[str, Any] = {}
    if filters.accounts:
        names = [f":account_{i}" for i in range(len(filters.accounts))]
        clauses.append(f"{prefix}account IN ({', '.join(names)})")
        params.update({n[1:]: a for n, a in zip(names, filters.accounts, strict=True)})
    if filters.start:
        clauses.append(f"{prefix}{date_column} >= :start")
        params["start"] = filters.start
    if filters.end:
        clauses.append(f"{prefix}{date_column} <= :end")
        params["end"] = filters.end
    return (" AND ".join(clauses) or "1 = 1"), params


def _is_number(value: object) -> bool:
    return isinstance(value, int | float | Decimal) and not isinstance(value, bool)


def typed_column(values: Sequence[Any]) -> pd.Series:
    """One column of query results, typed by what it holds: whole numbers as Int64 (so
    that a NULL does not turn 5 into 5.0), other numbers as float64 (NULL is NaN), the
    rest (text, dates, all-NULL) as they came."""
    present = [v for v in values if v is not None and v is not pd.NA
               and not (isinstance(v, float) and math.isnan(v))]
    if not present or not all(_is_number(v) for v in present):
        return pd.Series(values, dtype=object)
    if all(isinstance(v, int) for v in present):
        return pd.Series([None if v is None or v is pd.NA else v for v in values],
                         dtype="Int64")
    return pd.Series([math.nan if v is None or v is pd.NA else float(v) for v in values],
                     dtype="float64")


def read_frame(engine: Bind, sql: str, params: dict[str, Any]) -> pd.DataFrame:
    """The rows of ``sql``, each column typed by what it holds (typed_column)."""
    with connection(engine) as conn:
        result = conn.execute(sa.text(sql), params)
        columns = list(result.keys())
        rows = result.fetchall()
    return pd.DataFrame({name: typed_column(values) for name, values
                         in zip(columns, zip(*rows, strict=True), strict=True)}
                        if rows else {name: pd.Series(dtype=object) for name in columns},
                        columns=columns)
