"""`snapshotter report ...` and `snapshotter export`: the views, as tables, CSV, JSON, Parquet."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any

import pandas as pd
import sqlalchemy as sa
from tabulate import tabulate

from snapshotter.progress import Progress
from snapshotter.store.models import DATA_TABLES

VIEWS = ("portfolio_daily", "portfolio_daily_all", "pnl_daily", "holding_daily",
         "realised_estimate", "corporate_actions", "reconciliation", "trade_reconciliation")
TABLES = ("snapshots", *DATA_TABLES, "snapshot_totals")  # raw_payloads: gzip blobs, not exported
# Console imports (`snapshotter import`) and the FIFO lots built from them.
CONSOLE_TABLES = ("console_files", "trades", "ledger_entries", "dividends",
                  "corporate_action_entries", "realised_lots", "open_lots", "trade_positions")


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


def _query(engine: sa.Engine, sql: str, params: dict[str, Any]) -> pd.DataFrame:
    with engine.connect() as conn:
        result = conn.execute(sa.text(sql), params)
        return pd.DataFrame(result.fetchall(), columns=list(result.keys()))


def summary(engine: sa.Engine, filters: Filters = Filters()) -> pd.DataFrame:
    """Per account: value on the last session in range, and market P&L / return over it;
    ``warnings``: that session's snapshot's warnings (answers that looked wrong), one per
    line, or None."""
    where, params = _where(filters, alias="p")
    inner, _ = _where(filters, alias="q")
    sql = f"""
        SELECT p.account,
               MIN(p.snapshot_date) AS first_session,
               MAX(p.snapshot_date) AS last_session,
               COUNT(*) AS sessions,
               SUM(CASE WHEN p.snapshot_date > first.first_date THEN p.market_pnl END)
                   AS market_pnl,
               SUM(CASE WHEN p.snapshot_date > first.first_date THEN p.cash_flow END)
                   AS cash_flow,
               MIN(p.drawdown) * 100 AS max_drawdown_pct
        FROM pnl_daily p
        JOIN (SELECT account, MIN(snapshot_date) AS first_date FROM pnl_daily q
              WHERE {inner} GROUP BY account) first
          ON first.account = p.account
        WHERE {where}
        GROUP BY p.account ORDER BY p.account"""
    periods = _query(engine, sql, params)
    if periods.empty:
        return periods
    rows = []
    for period in periods.to_dict("records"):
        last = _query(engine, """
            SELECT d.total_value, d.holdings_value, d.mf_value, d.cash, d.positions_m2m,
                   d.holdings_unrealised_pnl, d.holdings_day_pnl, p.twr_index
            FROM portfolio_daily d JOIN pnl_daily p
              ON p.account = d.account AND p.snapshot_date = d.snapshot_date
            WHERE d.account = :account AND d.snapshot_date = :day""",
                      {"account": period["account"], "day": period["last_session"]})
        first = _query(engine, """SELECT twr_index FROM pnl_daily
                                  WHERE account = :account AND snapshot_date = :day""",
                       {"account": period["account"], "day": period["first_session"]})
        warned = _query(engine, """SELECT warnings FROM snapshots WHERE account = :account
                                   AND snapshot_date = :day AND status = 'ok'""",
                        {"account": period["account"], "day": period["last_session"]})
        values = last.iloc[0].to_dict()
        values["warnings"] = warned.iloc[0]["warnings"] if not warned.empty else None
        twr_first = float(first.iloc[0]["twr_index"] or 1.0)
        twr_last = float(values.pop("twr_index") or 1.0)
        rows.append({**period, **values,
                     "return_pct": (twr_last / twr_first - 1) * 100 if twr_first else None})
    columns = ["account", "first_session", "last_session", "sessions", "total_value",
               "holdings_value", "mf_value", "cash", "positions_m2m",
               "holdings_unrealised_pnl", "holdings_day_pnl", "cash_flow", "market_pnl",
               "return_pct", "max_drawdown_pct", "warnings"]
    return pd.DataFrame(rows)[columns]


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


# Ratios, not money: shown with 6 decimals in tables.
RATIO_COLUMNS = {"daily_return", "twr_index", "drawdown", "weight", "ratio", "xirr"}


def _cell(value: Any, column: str) -> Any:
    if value is None or (not isinstance(value, str) and pd.isna(value)):
        return ""
    if column == "warnings":  # the texts: `snapshotter status`, or --format json/csv
        count = len(str(value).splitlines())
        return f"{count} (see status)"
    if isinstance(value, float):
        return f"{value:.6f}" if column in RATIO_COLUMNS else f"{value:,.2f}"
    return value


# What `report summary` shows in a terminal (CSV and JSON carry every column).
SUMMARY_TABLE_COLUMNS = ["account", "last_session", "total_value", "holdings_value",
                         "mf_value", "cash", "holdings_day_pnl", "market_pnl", "return_pct",
                         "max_drawdown_pct", "warnings"]


def render(frame: pd.DataFrame, fmt: str) -> str:
    if fmt == "csv":
        return frame.to_csv(index=False)
    if fmt == "json":
        records = frame.astype(object).where(frame.notna(), None).to_dict("records")
        return json.dumps(records, default=str, indent=2)
    if frame.empty:
        return "(no rows)"
    columns = list(frame.columns)
    rows = [[_cell(v, c) for v, c in zip(row, columns, strict=True)]
            for row in frame.itertuples(index=False)]
    return tabulate(rows, headers=list(frame.columns), disable_numparse=True,
                    stralign="right")


def export(engine: sa.Engine, out_dir: Path, fmt: str) -> list[Path]:
    """Every table and view to ``out_dir`` as CSV or Parquet."""
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    names = TABLES + CONSOLE_TABLES + VIEWS
    with Progress(len(names), "tables and views") as progress:
        for name in names:
            frame = _query(engine, f"SELECT * FROM {name}", {})
            if "extra" in frame.columns:  # JSON column: keep it as text in flat files
                frame["extra"] = frame["extra"].map(
                    lambda v: v if v is None or isinstance(v, str) else json.dumps(v))
            path = out_dir / f"{name}.{fmt}"
            if fmt == "csv":
                frame.to_csv(path, index=False)
            else:
                frame.to_parquet(path, index=False)
            written.append(path)
            progress.advance()
    return written
