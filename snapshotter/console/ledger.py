"""Console's funds ledger (statement): ``particulars,posting_date,cost_center,voucher_type,
debit,credit,net_balance``, the first row ``Opening Balance`` and the last ``Closing
Balance`` (no dates). ``net_balance`` is a running balance, checked line by line.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from snapshotter.console.files import MAX_UNPACKED, Cells, read_table

COLUMNS = ("particulars", "posting_date", "cost_center", "voucher_type", "debit", "credit",
           "net_balance")
KEY = ("posting_date", "voucher_type", "particulars", "debit", "credit", "occurrence")
TOLERANCE = 0.01  # rupees: balances are given to the paisa


@dataclass(frozen=True)
class Parsed:
    frame: pd.DataFrame  # the entries, without the balance rows; ``line``: where from
    opening: float | None
    closing: float | None


def kinds(voucher_type: pd.Series, particulars: pd.Series) -> pd.Series:
    """``Bank Receipts`` deposit, ``Bank Payments`` withdrawal, a ``Book Voucher``
    "Net settlement ..." settlement, a ``Journal Entry`` "DP Charges ..." or "AMC ..."
    charge; anything else other."""
    voucher = voucher_type.fillna("").str.strip().str.lower()
    text = particulars.fillna("").str.strip().str.lower()
    return pd.Series(np.select(
        [voucher == "bank receipts", voucher == "bank payments",
         (voucher == "book voucher") & text.str.startswith("net settlement"),
         (voucher == "journal entry")
         & (text.str.startswith("dp charges") | text.str.startswith("amc"))],
        ["deposit", "withdrawal", "settlement", "charge"], default="other"),
        index=voucher_type.index, dtype=object)


def parse(data: bytes, file: str, *, max_unpacked: int = MAX_UNPACKED) -> Parsed:
    table = read_table(data, file, COLUMNS, what="Console ledger",
                       max_unpacked=max_unpacked)
    cells = Cells(table)
    particulars = cells.text("particulars", required=False).fillna("")
    marker = particulars.str.strip().str.lower()
    opening, closing = marker == "opening balance", marker == "closing balance"
    entry = ~(opening | closing)
    posting_date = cells.date("posting_date", required=False)
    voucher_type = cells.text("voucher_type", required=False).fillna("")
    debit = cells.number("debit", required=False)
    credit = cells.number("credit", required=False)
    balance = cells.number("net_balance", required=False)
    position = pd.Series(range(len(cells)), index=particulars.index)
    cells.problem(entry & posting_date.isna(), lambda p: "posting_date is blank")
    cells.problem(entry & balance.isna(), lambda p: "net_balance is blank")
    cells.problem((debit < 0) | (credit < 0), lambda p: "debit or credit is negative")
    cells.problem(opening & (position != 0),
                  lambda p: "Opening Balance is not the first row")
    cells.problem(closing & (position != len(cells) - 1),
                  lambda p: "Closing Balance is not the last row")
    cells.done()

    debit, credit = debit.fillna(0.0), credit.fillna(0.0)
    # A balance row's figure: its net_balance, else what its debit/credit columns say.
    stated = balance.where(balance.notna() | entry, credit - debit)
    _check_running_balance(cells, stated, debit.where(entry, 0.0), credit.where(entry, 0.0))

    frame = pd.DataFrame({
        "posting_date": posting_date, "particulars": particulars,
        "cost_center": cells.text("cost_center", required=False),
        "voucher_type": voucher_type, "debit": debit, "credit": credit,
        "net_balance": balance, "amount": (credit - debit).round(6),
        "kind": kinds(voucher_type, particulars), "line": table.lines,
    })[entry].reset_index(drop=True)
    frame["occurrence"] = frame.groupby(list(KEY[:-1]), sort=False).cumcount() + 1
    return Parsed(frame,
                  float(stated[opening].iloc[0]) if opening.any() else None,
                  float(stated[closing].iloc[0]) if closing.any() else None)


def _check_running_balance(cells: Cells, stated: pd.Series, debit: pd.Series,
                           credit: pd.Series) -> None:
    """Each net_balance is the one above plus credit minus debit (money in raises it);
    a file that keeps the other sign throughout (debit raises it) is accepted too."""
    previous = stated.shift(1)
    checked = previous.notna()
    plus = previous + credit - debit
    minus = previous + debit - credit
    off_plus = checked & ((stated - plus).abs() > TOLERANCE)
    off_minus = checked & ((stated - minus).abs() > TOLERANCE)
    if not off_plus.any() or not off_minus.any():
        return

    def first(mask: pd.Series) -> int:
        return int(mask.to_numpy().argmax())

    expected = plus if first(off_plus) >= first(off_minus) else minus
    mask = off_plus if expected is plus else off_minus
    sign = ("+ credit - debit" if expected is plus else "+ debit - credit")
    cells.problem(mask, lambda p: (
        f"net_balance {stated.iloc[p]:.2f} does not follow from the balance above "
        f"({previous.iloc[p]:.2f} {sign} = {expected.iloc[p]:.2f})"))
    cells.done()
