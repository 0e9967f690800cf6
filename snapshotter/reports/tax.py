"""`report tax --fy`: the realised P&L of a financial year's sold lots (realised_lots,
from the Console imports) by term, and its dividends."""

from __future__ import annotations

import re
from datetime import date
from typing import Any

import pandas as pd

from snapshotter.reports.query import Bind, Filters, filter_sql, read_frame

# Finance (No. 2) Act, 2024: capital gains rates changed for transfers from this day
# (short-term on listed equity 15% -> 20%, long-term 10% -> 12.5%).
RATE_CHANGE = date(2024, 7, 23)
SUFFIXES = ("before_2024_07_23", "from_2024_07_23")
TERMS = {"intraday": "intraday", "short": "stcg", "long": "ltcg"}
TAX_COLUMNS = ["account",
               *(f"{name}{suffix}" for name in TERMS.values()
                 for suffix in ("", *(f"_{s}" for s in SUFFIXES))),
               "unmatched", "dividends"]


def fiscal_year(text: str) -> tuple[date, date]:
    """``2025-26`` -> 2025-04-01 .. 2026-03-31 (India's financial year)."""
    match = re.fullmatch(r"(\d{4})-(\d{2})", text.strip())
    if not match or (int(match.group(1)) + 1) % 100 != int(match.group(2)):
        raise ValueError(f"{text!r} is not a financial year like 2025-26")
    start = int(match.group(1))
    return date(start, 4, 1), date(start + 1, 3, 31)


def fiscal_year_of(day: date) -> str:
    """The financial year ``day`` falls in: 2026-03-31 -> ``2025-26``, 2026-04-01 ->
    ``2026-27``."""
    start = day.year if day.month >= 4 else day.year - 1
    return f"{start}-{(start + 1) % 100:02d}"


def tax_note(fy: str) -> str:
    start, end = fiscal_year(fy)
    return (f"FY {fy} ({start} to {end}): an ESTIMATE from the imported trades' FIFO lots "
            "(realised_lots) and dividends by ex-date, not a tax computation: no "
            "grandfathering of gains before 2018-02-01, no charges, STT or expenses, no "
            "set-off, exemption or rates; the *_before/_from_2024_07_23 columns split each "
            "total at the rate change of the Finance (No. 2) Act 2024.")


def tax(engine: Bind, fy: str, accounts: tuple[str, ...] = ()) -> pd.DataFrame:
    """Per account: the P&L of the lots sold in the financial year by term (intraday,
    stcg = short, ltcg = long), each also split at 2024-07-23; ``unmatched``: how many
    sold lots had no buy; ``dividends``: net dividends with their ex-date in the year."""
    start, end = fiscal_year(fy)
    where, params = filter_sql(Filters(accounts, start, end), date_column="sell_date")
    lots = read_frame(engine, f"""SELECT account, term, unmatched, sell_date, pnl
                              FROM realised_lots WHERE {where}""", params)
    where, params = filter_sql(Filters(accounts, start, end), date_column="ex_date")
    paid = read_frame(engine, f"""SELECT account, SUM(net_dividend_amount) AS dividends
                              FROM dividends WHERE {where} GROUP BY account""", params)
    names = list(accounts) or sorted(set(read_frame(engine, """
        SELECT DISTINCT account FROM trades UNION SELECT DISTINCT account FROM dividends
        """, {})["account"]))
    rows = []
    for account in names:
        mine = lots[lots["account"] == account]
        row: dict[str, Any] = {"account": account}
        sold = pd.to_datetime(mine["sell_date"]).dt.date
        before = sold < RATE_CHANGE
        for term, name in TERMS.items():
            pnl = mine["pnl"].where(mine["term"] == term, 0.0).astype(float)
            row[name] = round(float(pnl.sum()), 2)
            row[f"{name}_{SUFFIXES[0]}"] = round(float(pnl[before].sum()), 2)
            row[f"{name}_{SUFFIXES[1]}"] = round(float(pnl[~before].sum()), 2)
        row["unmatched"] = int(mine["unmatched"].astype(bool).sum())
        dividends = paid.loc[paid["account"] == account, "dividends"]
        row["dividends"] = round(float(dividends.sum()), 2)
        rows.append(row)
    return pd.DataFrame(rows, columns=TAX_COLUMNS)
