"""Console's equity dividends report: XLSX, sheet "Equity Dividends", columns Symbol,
ISIN, Ex-Date, Quantity, Dividend Per Share, Net Dividend Amount below a preamble
(a CSV with the same columns is read too)."""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

from snapshotter.console.files import MAX_UNPACKED, Cells, read_table

COLUMNS = ("symbol", "isin", "ex_date", "quantity", "dividend_per_share",
           "net_dividend_amount")
SHEET = "Equity Dividends"
KEY = ("tradingsymbol", "ex_date", "dividend_per_share", "occurrence")


@dataclass(frozen=True)
class Parsed:
    frame: pd.DataFrame
    client_id: str | None = None


def parse(data: bytes, file: str, *, max_unpacked: int = MAX_UNPACKED) -> Parsed:
    table = read_table(data, file, COLUMNS, sheet=SHEET, what="Console dividends report",
                       max_unpacked=max_unpacked)
    cells = Cells(table)
    frame = pd.DataFrame({
        "tradingsymbol": cells.text("symbol", upper=True),
        "isin": cells.text("isin", required=False, upper=True),
        "ex_date": cells.date("ex_date"),
        "quantity": cells.number("quantity", positive=True),
        "dividend_per_share": cells.number("dividend_per_share"),
        "net_dividend_amount": cells.number("net_dividend_amount"),
        "line": table.lines,
    })
    amount = frame["net_dividend_amount"]
    cells.problem(amount < 0, lambda p: f"net_dividend_amount {amount.iloc[p]} is negative")
    cells.done()
    frame["occurrence"] = frame.groupby(list(KEY[:-1]), sort=False).cumcount() + 1
    return Parsed(frame, table.client_id)
