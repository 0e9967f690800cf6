"""A short, human-readable summary of stored snapshots (used by `demo` and `run`)."""

from __future__ import annotations

from datetime import date

import sqlalchemy as sa
from tabulate import tabulate

SUMMARY_SQL = sa.text("""
SELECT s.account,
       s.snapshot_date,
       s.final,
       s.holdings_count,
       s.positions_count,
       s.mf_holdings_count,
       COALESCE((SELECT SUM((h.quantity + COALESCE(h.t1_quantity, 0)) * h.last_price)
                 FROM holdings h WHERE h.snapshot_id = s.id), 0) AS holdings_value,
       COALESCE((SELECT SUM((h.quantity + COALESCE(h.t1_quantity, 0))
                            * (h.last_price - h.close_price))
                 FROM holdings h WHERE h.snapshot_id = s.id), 0) AS day_pnl,
       COALESCE((SELECT SUM(m.quantity * m.last_price)
                 FROM mf_holdings m WHERE m.snapshot_id = s.id), 0) AS mf_value,
       COALESCE((SELECT SUM(f.cash) FROM funds f WHERE f.snapshot_id = s.id), 0) AS cash
FROM snapshots s
WHERE s.status = 'ok' AND s.snapshot_date = :day
ORDER BY s.account
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
