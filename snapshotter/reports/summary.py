"""Summaries of stored snapshots: a short one of a session (used by `demo` and `run`),
and `report summary` (each account, and ALL, over a window)."""

from __future__ import annotations

from datetime import date
from typing import Any

import pandas as pd
import sqlalchemy as sa
from tabulate import tabulate

from snapshotter.reports.performance import ALL, nav_figures
from snapshotter.reports.query import Bind, Filters, connection, filter_sql, read_frame
from snapshotter.routes import ROUTES

# The routes whose row counts a session's summary shows, and their headings.
SUMMARY_COUNTS = {route.count_column: route.summary_heading for route in ROUTES
                  if route.summary_heading}
# The figures come from the portfolio_daily view: its formulas are the only ones.
SUMMARY_SQL = sa.text(f"""
SELECT p.account, p.snapshot_date, p.final,
       {", ".join(f"s.{column}" for column in SUMMARY_COUNTS)},
       p.holdings_value, p.holdings_day_pnl AS day_pnl, p.mf_value, p.cash
FROM portfolio_daily p
JOIN snapshots s ON s.id = p.snapshot_id
WHERE p.snapshot_date = :day
ORDER BY p.account
""")


def _money(value: float) -> str:
    return f"{value:,.2f}"


def summary_table(engine: Bind, day: date) -> str:
    with connection(engine) as conn:
        rows = conn.execute(SUMMARY_SQL, {"day": day}).mappings().all()
    table = [
        [r["account"], r["snapshot_date"], "yes" if r["final"] else "no",
         *(r[column] for column in SUMMARY_COUNTS), _money(r["holdings_value"]),
         _money(r["day_pnl"]), _money(r["mf_value"]), _money(r["cash"])]
        for r in rows
    ]
    headers = ["account", "session", "final", *SUMMARY_COUNTS.values(),
               "holdings value", "day P&L", "mf value", "cash"]
    return tabulate(table, headers=headers, disable_numparse=True,
                    colalign=("left", "left", "left", *("right",) * (len(headers) - 3)))


def report_summary(engine: Bind, filters: Filters | None = None) -> pd.DataFrame:
    """`report summary`. Per account: value on the last session in range, and market P&L
    / return over it; ``warnings``: that session's snapshot's warnings (answers that
    looked wrong), one per line, or None. Without an account filter and with more than
    one account, an ``ALL`` row: the household (``portfolio_daily_all``). ``return_pct`` and
    ``max_drawdown_pct`` are `report performance`'s ``nav_return`` and ``max_drawdown``
    over the same window, in percent."""
    filters = filters or Filters()
    where, params = filter_sql(filters, alias="p")
    inner, _ = filter_sql(filters, alias="q")
    sql = f"""
        SELECT p.account,
               MIN(p.snapshot_date) AS first_session,
               MAX(p.snapshot_date) AS last_session,
               COUNT(*) AS sessions,
               SUM(CASE WHEN p.snapshot_date > first.first_date THEN p.market_pnl END)
                   AS market_pnl,
               SUM(CASE WHEN p.snapshot_date > first.first_date THEN p.cash_flow END)
                   AS cash_flow
        FROM pnl_daily p
        JOIN (SELECT account, MIN(snapshot_date) AS first_date FROM pnl_daily q
              WHERE {inner} GROUP BY account) first
          ON first.account = p.account
        WHERE {where}
        GROUP BY p.account ORDER BY p.account"""
    periods = read_frame(engine, sql, params)
    if periods.empty:
        return periods
    figures = nav_figures(engine, filters)
    rows = []
    for period in periods.to_dict("records"):
        last = read_frame(engine, """
            SELECT total_value, holdings_value, mf_value, cash, positions_m2m,
                   holdings_unrealised_pnl, holdings_day_pnl
            FROM portfolio_daily WHERE account = :account AND snapshot_date = :day""",
                      {"account": period["account"], "day": period["last_session"]})
        warned = read_frame(engine, """SELECT warnings FROM snapshots WHERE account = :account
                                   AND snapshot_date = :day AND status = 'ok'""",
                        {"account": period["account"], "day": period["last_session"]})
        values = last.iloc[0].to_dict()
        values["warnings"] = warned.iloc[0]["warnings"] if not warned.empty else None
        rows.append({**period, **values, **_returns(figures, period["account"])})
    if not filters.accounts and len(rows) > 1 and ALL in figures.index:
        rows.append(_household_row(engine, filters, figures))
    return pd.DataFrame(rows)[SUMMARY_COLUMNS]


SUMMARY_COLUMNS = ["account", "first_session", "last_session", "sessions", "total_value",
                   "holdings_value", "mf_value", "cash", "positions_m2m",
                   "holdings_unrealised_pnl", "holdings_day_pnl", "cash_flow", "market_pnl",
                   "return_pct", "max_drawdown_pct", "warnings"]

SUMMARY_NOTE = (
    "total_value = holdings_value + mf_value + cash + positions_m2m; return_pct and "
    "max_drawdown_pct are `report performance`'s nav_return and max_drawdown in percent "
    "(the NAV, as Console's Performance Curve: a deposit counts from the start of its "
    "day, where performance's twr counts it from the next session); ALL: every account "
    "together, one that missed a session at its last value")


def _returns(figures: pd.DataFrame, account: str) -> dict[str, Any]:
    if account not in figures.index:
        return {"return_pct": None, "max_drawdown_pct": None}
    row = figures.loc[account]
    return {"return_pct": row["nav_return"] * 100, "max_drawdown_pct": row["max_drawdown"] * 100}


def _household_row(engine: Bind, filters: Filters, figures: pd.DataFrame,
                   ) -> dict[str, Any]:
    """The ``ALL`` row of `report summary`, from ``portfolio_daily_all`` and the
    household's NAV figures."""
    where, params = filter_sql(Filters(start=filters.start, end=filters.end))
    household = figures.loc[ALL]
    last = read_frame(engine, f"""
        SELECT snapshot_date, total_value, holdings_value, mf_value, cash, positions_m2m,
               holdings_unrealised_pnl, holdings_day_pnl
        FROM portfolio_daily_all WHERE {where} ORDER BY snapshot_date DESC LIMIT 1""",
                  params).iloc[0].to_dict()
    sessions = read_frame(engine, f"SELECT COUNT(*) AS n FROM portfolio_daily_all WHERE {where}",
                      params).iloc[0]["n"]
    return {"account": ALL, "first_session": household["from"].date().isoformat(),
            "last_session": household["to"].date().isoformat(), "sessions": int(sessions),
            **{k: v for k, v in last.items() if k != "snapshot_date"},
            "cash_flow": household["net_flows"], "market_pnl": household["market_pnl"],
            **_returns(figures, ALL), "warnings": None}


# What `report summary` shows in a terminal (CSV and JSON carry every column).
SUMMARY_TABLE_COLUMNS = ["account", "last_session", "total_value", "holdings_value",
                         "mf_value", "cash", "positions_m2m", "holdings_day_pnl", "market_pnl",
                         "return_pct", "max_drawdown_pct", "warnings"]
