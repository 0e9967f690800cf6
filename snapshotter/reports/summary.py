"""A short, human-readable summary of stored snapshots (used by `demo` and `run`)."""

from __future__ import annotations

from datetime import date

import sqlalchemy as sa
from tabulate import tabulate

# The figures come from the portfolio_daily view: its formulas are the only ones.
SUMMARY_SQL = sa.text("""
SELECT p.account, p.snapshot_date, p.final,
       s.holdings_count, s.positions_count, s.mf_holdings_count,
       p.holdings_value, p.holdings_day_pnl AS day_pnl, p.mf_value, p.cash
FROM portfolio_daily p
JOIN snapshots s ON s.id = p.snapshot_id
WHERE p.snapshot_date = :day
ORDER BY p.account
""")


def _money(value: float) -> str:
    return f"{value:,.2f}"


def summary_table(engine: sa.Engine, day: date) -> str:
    with engine.connect() as conn:
        rows = conn.execute(SUMMARY_SQL, {"day": day}).mappings().all()
    table = [
        [r["account"], r["snapshot_date"], "yes" if r["final"] else "no", r["holdings_count"],
         r["positions_count"], r["mf_holdings_count"], _money(r["holdings_value"]),
         _money(r["day_pnl"]), _money(r["mf_value"]), _money(r["cash"])]
        for r in rows
    ]
    headers = ["account", "session", "final", "holdings", "positions", "mf",
               "holdings value", "day P&L", "mf value", "cash"]
    return tabulate(table, headers=headers, disable_numparse=True,
                    colalign=("left", "left", "left", "right", "right", "right", "right",
                              "right", "right", "right"))
