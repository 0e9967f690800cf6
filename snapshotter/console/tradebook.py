"""Console's tradebook: one row per fill.

CSV header ``symbol,isin,trade_date,exchange,segment,series,trade_type,auction,quantity,
price,trade_id,order_id,order_execution_time`` (F&O adds ``expiry_date``); the XLSX
variant has the same columns in Title Case (``Trade Date``) below a preamble. Stored as
``trades``, with ``symbol`` named ``tradingsymbol`` as in every other table.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import pandas as pd

from snapshotter.console.files import MAX_UNPACKED, Cells, read_table

COLUMNS = ("symbol", "isin", "trade_date", "exchange", "segment", "series", "trade_type",
           "auction", "quantity", "price", "trade_id", "order_id", "order_execution_time")
OPTIONAL = ("expiry_date",)
KEY = ("exchange", "trade_id")
# Compared when a trade id comes twice: the same trade, or two different ones?
SAME_TRADE = ("tradingsymbol", "trade_date", "trade_type", "quantity", "price")


@dataclass(frozen=True)
class Parsed:
    """One file's rows (``line``: where each came from), what to warn about, and the
    client id its preamble names (XLSX), if any."""

    frame: pd.DataFrame
    warnings: list[str] = field(default_factory=list)
    client_id: str | None = None


def parse(data: bytes, file: str, *, max_unpacked: int = MAX_UNPACKED) -> Parsed:
    table = read_table(data, file, COLUMNS, optional=OPTIONAL, what="Console tradebook",
                       max_unpacked=max_unpacked)
    cells = Cells(table)
    frame = pd.DataFrame({
        "tradingsymbol": cells.text("symbol", upper=True),
        "isin": cells.text("isin", required=False, upper=True),
        "trade_date": cells.date("trade_date"),
        "exchange": cells.text("exchange", upper=True),
        "segment": cells.text("segment", upper=True),
        "series": cells.text("series", required=False),
        "trade_type": cells.choice("trade_type", ("buy", "sell")),
        "auction": cells.boolean("auction"),
        "quantity": cells.number("quantity", positive=True),
        "price": cells.number("price"),
        "trade_id": cells.text("trade_id"),
        "order_id": cells.text("order_id", required=False),
        "order_execution_time": cells.timestamp("order_execution_time", required=False),
        "expiry_date": cells.date("expiry_date", required=False),
        "line": table.lines,
    })
    price = frame["price"]
    cells.problem(price < 0, lambda p: f"price {price.iloc[p]} is negative")
    cells.done()
    frame, warnings = _without_repeats(frame, file, table.where)
    return Parsed(fill_isin(frame), warnings, table.client_id)


def _without_repeats(frame: pd.DataFrame, file: str,
                     where: str) -> tuple[pd.DataFrame, list[str]]:
    """A trade id that comes twice in one file is one trade: the first row is kept (a
    warning when the two rows disagree)."""
    repeat = frame.duplicated(list(KEY), keep="first")
    warnings = []
    if repeat.any():
        first = frame[~repeat].set_index(list(KEY))
        for row in frame[repeat].itertuples(index=False):
            kept = first.loc[(row.exchange, row.trade_id)]
            if any(getattr(row, c) != kept[c] for c in SAME_TRADE):
                warnings.append(
                    f"{file}: {where} {row.line}: trade {row.trade_id} on {row.exchange} "
                    f"repeats {where} {kept['line']} with other values; {where} "
                    f"{kept['line']} is kept")
    return frame[~repeat].reset_index(drop=True), warnings


def fill_isin(frame: pd.DataFrame) -> pd.DataFrame:
    """A blank ISIN takes the ISIN of the symbol's nearest earlier row with one, else its
    nearest later one (ISINs change at some splits, so the nearest in time)."""
    if frame.empty or frame["isin"].notna().all():
        return frame
    order = frame.sort_values("trade_date", kind="stable")
    by_symbol = order.groupby("tradingsymbol", sort=False)["isin"]
    filled = by_symbol.ffill().fillna(by_symbol.bfill())
    out = frame.copy()
    out["isin"] = filled.reindex(frame.index).astype(object).where(
        filled.reindex(frame.index).notna(), None)
    return out
