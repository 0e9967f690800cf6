"""Reports from the Console imports: `report tax --fy` (realised_lots and dividends per
financial year) and `report holdings --xirr` (each holding's XIRR from its open lots)."""

from __future__ import annotations

import re
from datetime import date
from typing import Any

import pandas as pd
import sqlalchemy as sa

from snapshotter.reports.tables import Filters, _query, _where

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


def tax_note(fy: str) -> str:
    start, end = fiscal_year(fy)
    return (f"FY {fy} ({start} to {end}): an ESTIMATE from the imported trades' FIFO lots "
            "(realised_lots) and dividends by ex-date, not a tax computation: no "
            "grandfathering of gains before 2018-02-01, no charges, STT or expenses, no "
            "set-off, exemption or rates; the *_before/_from_2024_07_23 columns split each "
            "total at the rate change of the Finance (No. 2) Act 2024.")


def tax(engine: sa.Engine, fy: str, accounts: tuple[str, ...] = ()) -> pd.DataFrame:
    """Per account: the P&L of the lots sold in the financial year by term (intraday,
    stcg = short, ltcg = long), each also split at 2024-07-23; ``unmatched``: how many
    sold lots had no buy; ``dividends``: net dividends with their ex-date in the year."""
    start, end = fiscal_year(fy)
    where, params = _where(Filters(accounts, start, end), date_column="sell_date")
    lots = _query(engine, f"""SELECT account, term, unmatched, sell_date, pnl
                              FROM realised_lots WHERE {where}""", params)
    where, params = _where(Filters(accounts, start, end), date_column="ex_date")
    paid = _query(engine, f"""SELECT account, SUM(net_dividend_amount) AS dividends
                              FROM dividends WHERE {where} GROUP BY account""", params)
    names = list(accounts) or sorted(set(_query(engine, """
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


def with_xirr(engine: sa.Engine, holdings: pd.DataFrame) -> pd.DataFrame:
    """``holdings`` (report holdings' rows) with ``xirr``: the annualised return of the
    holding's open FIFO lots (each bought at its price on its date; a bonus lot at 0),
    valued at the holding's price on its snapshot date, as Console shows for holdings.
    A fraction (0.12 = 12% a year); NULL without open lots or when it has no answer."""
    from pyxirr import InvalidPaymentsError, xirr

    out = holdings.copy()
    if out.empty:
        out["xirr"] = pd.Series(dtype=float)
        return out
    accounts = tuple(sorted(set(out["account"])))
    where, params = _where(Filters(accounts))
    lots = _query(engine, f"""
        SELECT account, COALESCE(isin, tradingsymbol) AS instrument, buy_date, quantity,
               buy_price
        FROM open_lots WHERE {where}""", params)
    held = _query(engine, f"""
        SELECT account, snapshot_date, exchange, tradingsymbol,
               COALESCE(NULLIF(isin, ''), tradingsymbol) AS instrument
        FROM holdings WHERE {where}""", params)
    held["snapshot_date"] = pd.to_datetime(held["snapshot_date"]).dt.date
    out["snapshot_date"] = pd.to_datetime(out["snapshot_date"]).dt.date
    keyed = out.merge(held, on=["account", "snapshot_date", "exchange", "tradingsymbol"],
                      how="left")
    lots["buy_date"] = pd.to_datetime(lots["buy_date"]).dt.date
    by_key = {key: group for key, group in lots.groupby(["account", "instrument"])}
    values: list[float | None] = []
    for row in keyed.itertuples(index=False):
        group = by_key.get((row.account, row.instrument))
        if group is None or row.price is None or pd.isna(row.price):
            values.append(None)
            continue
        quantity = float(group["quantity"].sum())
        dates = [*group["buy_date"], row.snapshot_date]
        amounts = [*(-group["quantity"] * group["buy_price"]), quantity * float(row.price)]
        try:
            rate = xirr(dates, amounts)
        except (InvalidPaymentsError, ValueError):
            rate = None
        values.append(round(rate, 6) if rate is not None and pd.notna(rate) else None)
    out["xirr"] = values
    return out
