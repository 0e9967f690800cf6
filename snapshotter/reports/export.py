"""`snapshotter export`: every table and view to a directory as CSV or Parquet, typed by
the schema, never replacing a file."""

from __future__ import annotations

import contextlib
import errno
import gzip
import json
import os
import tempfile
from collections.abc import Sequence
from datetime import date
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd
import sqlalchemy as sa

from snapshotter.errors import UsageError
from snapshotter.progress import Progress
from snapshotter.reports.query import Bind, connection
from snapshotter.reports.render import decimals, safe_for_spreadsheets
from snapshotter.store.models import DATA_TABLES, Base, UTCDateTime

if TYPE_CHECKING:
    import pyarrow as pa

    from snapshotter.routes import Kind

# The views an export writes, in this order after the tables.
EXPORTED_VIEWS = ("portfolio_daily", "household_daily", "portfolio_daily_all", "pnl_daily",
                  "holding_daily", "realised_estimate", "corporate_actions",
                  "reconciliation", "nav_daily", "nav_daily_all", "trade_reconciliation")
# Every table, the ledger first; raw_payloads' gzip bodies are exported as their JSON text.
EXPORTED_TABLES = ("snapshots", "raw_payloads", *DATA_TABLES, "snapshot_totals",
                   *sorted(set(Base.metadata.tables) - {"snapshots", "raw_payloads",
                                                        "snapshot_totals", *DATA_TABLES}))


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


def _read(engine: Bind, name: str) -> pa.Table:
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
    with connection(engine) as conn:
        rows = conn.execute(query).all()
    by_column = list(zip(*rows, strict=True)) if rows else [()] * len(columns)
    return pa.table({c.name: _arrow_column(values, kind, c.name)
                     for c, kind, values in zip(columns, kinds, by_column, strict=True)})


def export(engine: Bind, out_dir: Path, fmt: str,
           labels: dict[str, str] | None = None) -> list[Path]:
    """Every table and view to ``out_dir`` as CSV or Parquet, typed by the schema (so
    the files are the same from SQLite and PostgreSQL): dates as dates, timestamps in
    UTC, numbers rounded as reports round them (decimals()), JSON as its text; with
    ``labels``, each account's label after its account. CSV text cells are safe for
    spreadsheets (spreadsheet_safe). A file already in ``out_dir`` under one of the
    names (a symlink included) is refused before anything is written, and never
    replaced: each file is written under a temporary name beside it, then linked into
    place only while the name is free."""
    names = EXPORTED_TABLES + EXPORTED_VIEWS
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
