"""`snapshotter report ...` and `snapshotter export`: the views, as tables, CSV, JSON, Parquet."""

from __future__ import annotations

import contextlib
import errno
import gzip
import json
import math
import os
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd
import sqlalchemy as sa
from tabulate import tabulate

from snapshotter.errors import UsageError
from snapshotter.progress import Progress
from snapshotter.store.models import DATA_TABLES, Base, UTCDateTime

if TYPE_CHECKING:
    import pyarrow as pa

    from snapshotter.routes import Kind

VIEWS = ("portfolio_daily", "household_daily", "portfolio_daily_all", "pnl_daily",
         "holding_daily", "realised_estimate", "corporate_actions", "reconciliation",
         "nav_daily", "nav_daily_all", "trade_reconciliation")
# Every table, the ledger first; raw_payloads' gzip bodies are exported as their JSON text.
TABLES = ("snapshots", "raw_payloads", *DATA_TABLES, "snapshot_totals",
          *sorted(set(Base.metadata.tables) - {"snapshots", "raw_payloads",
                                               "snapshot_totals", *DATA_TABLES}))

# Decimals of the numbers reports and exports write, so that no float noise shows
# (9615.90000000003 is 9615.9): money, prices and quantities to 6, as normalize stores
# them and the views round what they sum or derive; ratios to 10, as the views round
# twr_index and drawdown; percentages to 8 (a ratio's 10, times 100).
MONEY_DECIMALS = 6
RATIO_DECIMALS = 10
PERCENT_DECIMALS = 8
RATIO_COLUMNS = {"daily_return", "twr_index", "drawdown", "weight", "ratio", "xirr",
                 # report performance's
                 "twr", "nav_return", "cagr", "max_drawdown", "volatility",
                 "benchmark_return", "excess_return"}


def decimals(column: str) -> int:
    if column in RATIO_COLUMNS:
        return RATIO_DECIMALS
    if column.endswith("_pct"):
        return PERCENT_DECIMALS
    return MONEY_DECIMALS


@dataclass(frozen=True)
class Filters:
    accounts: tuple[str, ...] = ()
    start: date | None = None
    end: date | None = None


def _where(filters: Filters, date_column: str = "snapshot_date",
           alias: str = "") -> tuple[str, dict[str, Any]]:
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


def _column(values: Sequence[Any]) -> pd.Series:
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


def _query(engine: sa.Engine, sql: str, params: dict[str, Any]) -> pd.DataFrame:
    with engine.connect() as conn:
        result = conn.execute(sa.text(sql), params)
        columns = list(result.keys())
        rows = result.fetchall()
    return pd.DataFrame({name: _column(values) for name, values
                         in zip(columns, zip(*rows, strict=True), strict=True)}
                        if rows else {name: pd.Series(dtype=object) for name in columns},
                        columns=columns)


def rounded(frame: pd.DataFrame) -> pd.DataFrame:
    """Numbers as the reports write them: typed (see _column) and rounded (decimals())."""
    out = frame.copy()
    for name in out.columns:
        column = out[name]
        if column.dtype == object:
            column = _column(list(column))
        if pd.api.types.is_float_dtype(column):
            column = column.round(decimals(str(name))) + 0.0  # + 0.0: no -0.0
        out[name] = column
    return out


def holdings(engine: sa.Engine, filters: Filters = Filters()) -> pd.DataFrame:
    """Each account's holdings on the last session in range."""
    where, params = _where(filters, alias="h")
    inner, _ = _where(filters, alias="x")
    return _query(engine, f"""
        SELECT h.account, h.snapshot_date, h.exchange, h.tradingsymbol, h.quantity,
               h.average_price, h.price, h.value, h.unrealised_pnl, h.day_pnl, h.weight,
               h.quantity_change
        FROM holding_daily h
        JOIN (SELECT account, MAX(snapshot_date) AS last FROM holding_daily x
              WHERE {inner} GROUP BY account) l
          ON l.account = h.account AND l.last = h.snapshot_date
        WHERE {where}
        ORDER BY h.account, h.value DESC""", params)


def pnl(engine: sa.Engine, filters: Filters = Filters()) -> pd.DataFrame:
    where, params = _where(filters)
    return _query(engine, f"""
        SELECT account, snapshot_date, previous_snapshot_date, total_value, value_change,
               cash_flow, market_pnl, daily_return, twr_index, drawdown
        FROM pnl_daily WHERE {where} ORDER BY snapshot_date, account""", params)


def history(engine: sa.Engine, symbol: str, filters: Filters = Filters()) -> pd.DataFrame:
    where, params = _where(filters)
    params["symbol"] = symbol.upper()
    return _query(engine, f"""
        SELECT account, snapshot_date, exchange, tradingsymbol, quantity, quantity_change,
               average_price, price, value, unrealised_pnl, day_pnl, weight
        FROM holding_daily WHERE UPPER(tradingsymbol) = :symbol AND {where}
        ORDER BY snapshot_date, account""", params)


def with_labels(frame: pd.DataFrame, labels: dict[str, str]) -> pd.DataFrame:
    """``frame`` with each account's ``label`` (``accounts[].label``) after its
    ``account`` column, when the config gives any account a label."""
    if not labels or "account" not in frame.columns or "label" in frame.columns:
        return frame
    out = frame.copy()
    out.insert(list(out.columns).index("account") + 1, "label",
               pd.Series([labels.get(str(a)) for a in out["account"]], index=out.index,
                         dtype=object))
    return out


# A cell a spreadsheet would read as a formula (or whose leading tab or CR it would eat):
# OWASP's CSV injection rule, a single quote before it, so that it stays text.
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def spreadsheet_safe(text: str) -> str:
    return f"'{text}" if text.startswith(FORMULA_STARTS) else text


def _safe_cell(value: Any) -> Any:
    return spreadsheet_safe(value) if isinstance(value, str) else value


def safe_for_spreadsheets(frame: pd.DataFrame) -> pd.DataFrame:
    """The text cells of ``frame`` neutralised (spreadsheet_safe); numbers untouched."""
    out = frame.copy()
    for name in out.columns:
        if out[name].dtype == object or pd.api.types.is_string_dtype(out[name]):
            out[name] = out[name].map(_safe_cell, na_action="ignore")
    return out


def non_finite(frame: pd.DataFrame, what: str = "") -> tuple[pd.DataFrame, list[str]]:
    """``frame`` with every infinite number made empty (NULL), and a note per column
    naming the rows (by account) that had one: JSON has no Infinity, and no figure is
    meaningful as one (e.g. a return over a close of 1e-300)."""
    out = frame.copy()
    notes = []
    for name in out.columns:
        column = out[name]
        if not pd.api.types.is_float_dtype(column):
            continue
        bad = column.isin([math.inf, -math.inf])
        if not bad.any():
            continue
        out[name] = column.where(~bad)
        rows = ", ".join(dict.fromkeys(str(a) for a in out.loc[bad, "account"])) \
            if "account" in out.columns else f"{int(bad.sum())} row(s)"
        notes.append(f"{what}{name} is empty for {rows}: not a finite number (check the "
                     "data it is computed from)")
    return out, notes


def _cell(value: Any, column: str) -> Any:
    if value is None or (not isinstance(value, str) and pd.isna(value)):
        return ""
    if column == "warnings":  # the texts: `snapshotter status`, or --format json/csv
        count = len(str(value).splitlines())
        return f"{count} (see status)"
    if isinstance(value, float):
        # Ratios, not money: 6 decimals in a table.
        return f"{value:.6f}" if column in RATIO_COLUMNS else f"{value:,.2f}"
    return value


def render(frame: pd.DataFrame, fmt: str) -> str:
    """The frame as text to print (no trailing newline); an infinite number is empty
    (see non_finite, whose notes the command prints)."""
    frame, _ = non_finite(rounded(frame))
    if fmt == "csv":
        return safe_for_spreadsheets(frame).to_csv(
            index=False, lineterminator="\n").removesuffix("\n")
    if fmt == "json":
        records = frame.astype(object).where(frame.notna(), None).to_dict("records")
        return json.dumps(records, default=str, indent=2, allow_nan=False)
    if frame.empty:
        return "(no rows)"
    columns = list(frame.columns)
    rows = [[_cell(v, c) for v, c in zip(row, columns, strict=True)]
            for row in frame.itertuples(index=False)]
    return tabulate(rows, headers=list(frame.columns), disable_numparse=True,
                    stralign="right")


def output_dir(out: str) -> Path:
    """`export --out DIR`: the directory, created when missing; one line when it cannot
    be (empty, a file of that name, a parent that is a file, no permission)."""
    if not out.strip():
        raise UsageError("--out is empty; give a directory")
    path = Path(out)
    if path.exists() and not path.is_dir():
        raise UsageError(f"--out {out} is a file; give a directory")
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UsageError(f"--out {out}: cannot create that directory "
                         f"({exc.strerror or type(exc).__name__}); give another") from None
    return path


def _kind(column: sa.ColumnElement[Any]) -> Kind:
    """A table column's kind, in the route table's vocabulary."""
    kind = column.type
    if isinstance(kind, UTCDateTime | sa.DateTime):
        return "datetime"
    if isinstance(kind, sa.Date):
        return "date"
    if isinstance(kind, sa.Boolean):
        return "bool"
    if isinstance(kind, sa.Integer):
        return "int"
    if isinstance(kind, sa.Float):
        return "float"
    return "str"  # Text, JSON (as its text), LargeBinary (raw_payloads: the JSON inside)


def _text(value: Any) -> str | None:
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, bytes | memoryview):  # raw_payloads.body: gzip JSON
        return gzip.decompress(bytes(value)).decode("utf-8")
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)  # a JSON column


def _arrow_column(values: Sequence[Any], kind: Kind, name: str) -> pa.Array:
    """One exported column: the same Arrow type from either database, NULLs included."""
    import pyarrow as pa

    if kind == "float":
        places = decimals(name)
        return pa.array([None if v is None else round(float(v), places) + 0.0
                         for v in values], pa.float64())
    if kind == "int":
        return pa.array([None if v is None else int(v) for v in values], pa.int64())
    if kind == "bool":
        return pa.array([None if v is None else bool(v) for v in values], pa.bool_())
    if kind == "date":
        return pa.array([date.fromisoformat(v) if isinstance(v, str) else v
                         for v in values], pa.date32())
    if kind == "datetime":
        return pa.array(values, pa.timestamp("us", tz="UTC"))
    return pa.array([_text(v) for v in values], pa.string())


# The columns that order a view's rows in an export (the views' natural keys).
VIEW_ORDER = ("account", "snapshot_date", "exchange", "tradingsymbol", "field")


def _read(engine: sa.Engine, name: str) -> pa.Table:
    """A table or view, typed by the schema: SQLAlchemy's column types for tables, the
    declared kinds (store.views.COLUMNS) for views."""
    import pyarrow as pa

    from snapshotter.store import views

    if name in Base.metadata.tables:
        table = Base.metadata.tables[name]
        columns: list[sa.ColumnElement[Any]] = list(table.columns)
        kinds = [_kind(c) for c in columns]
        query = sa.select(*columns).order_by(*table.primary_key.columns)
    else:
        columns = list(views.typed_columns(name))
        kinds = list(views.COLUMNS[name].values())
        order = [c for c in columns if c.name in VIEW_ORDER]
        query = sa.select(*columns).select_from(sa.table(name)).order_by(*order)
    with engine.connect() as conn:
        rows = conn.execute(query).all()
    by_column = list(zip(*rows, strict=True)) if rows else [()] * len(columns)
    return pa.table({c.name: _arrow_column(values, kind, c.name)
                     for c, kind, values in zip(columns, kinds, by_column, strict=True)})


def export(engine: sa.Engine, out_dir: Path, fmt: str,
           labels: dict[str, str] | None = None) -> list[Path]:
    """Every table and view to ``out_dir`` as CSV or Parquet, typed by the schema (so
    the files are the same from SQLite and PostgreSQL): dates as dates, timestamps in
    UTC, numbers rounded as reports round them (decimals()), JSON as its text; with
    ``labels``, each account's label after its account. CSV text cells are safe for
    spreadsheets (spreadsheet_safe). A file already in ``out_dir`` under one of the
    names (a symlink included) is refused before anything is written, and never
    replaced: each file is written under a temporary name beside it, then linked into
    place only while the name is free."""
    names = TABLES + VIEWS
    targets = [out_dir / f"{name}.{fmt}" for name in names]
    for path in targets:
        if os.path.lexists(path):
            raise _existing(out_dir, path)
    written = []
    with Progress(len(names), "tables and views") as progress:
        for name, path in zip(names, targets, strict=True):
            table = _read(engine, name)
            if labels and "account" in table.column_names:
                table = _with_label_column(table, labels)
            _write_new(table, path, fmt, out_dir)
            written.append(path)
            progress.advance()
    return written


def _with_label_column(table: pa.Table, labels: dict[str, str]) -> pa.Table:
    import pyarrow as pa

    at = table.column_names.index("account")
    values = [labels.get(str(a)) if a is not None else None
              for a in table.column("account").to_pylist()]
    return table.add_column(at + 1, "label", pa.array(values, pa.string()))


def _existing(out_dir: Path, path: Path) -> UsageError:
    return UsageError(f"--out {out_dir}: {path.name} is already there (an export never "
                      "replaces a file); give an empty or new directory")


def _write_new(table: pa.Table, path: Path, fmt: str, out_dir: Path) -> None:
    """``table`` as a new file at ``path``, never through a symlink nor over a file."""
    import pyarrow.parquet as pq

    frame = safe_for_spreadsheets(table.to_pandas(types_mapper=pd.ArrowDtype)) \
        if fmt == "csv" else None
    try:
        # mkstemp: O_CREAT | O_EXCL, so a link planted under the temporary name is
        # never followed either.
        fd, tmp = tempfile.mkstemp(dir=out_dir, prefix=f".{path.name}.", suffix=".tmp")
    except OSError as exc:
        raise UsageError(f"--out {out_dir}: cannot write {path.name} "
                         f"({exc.strerror or exc})") from None
    try:
        if frame is not None:
            with os.fdopen(fd, "w", encoding="utf-8", newline="") as text:
                frame.to_csv(text, index=False, lineterminator="\n")
        else:
            with os.fdopen(fd, "wb") as binary:
                pq.write_table(table, binary)
        _link_new(tmp, path)
    except FileExistsError:
        raise _existing(out_dir, path) from None
    except OSError as exc:
        raise UsageError(f"--out {out_dir}: cannot write {path.name} "
                         f"({exc.strerror or exc})") from None
    finally:
        with contextlib.suppress(OSError):
            os.unlink(tmp)


def _link_new(tmp: str, path: Path) -> None:
    """Give the file ``tmp`` the name ``path`` unless something has that name
    (FileExistsError): a hard link, which never replaces; where the file system has
    none, the name is taken with O_EXCL first and then renamed over."""
    try:
        os.link(tmp, path, follow_symlinks=False)
        return
    except OSError as exc:
        if exc.errno not in (errno.EPERM, errno.EOPNOTSUPP, errno.EXDEV, errno.EMLINK):
            raise
    os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600))
    os.replace(tmp, path)
