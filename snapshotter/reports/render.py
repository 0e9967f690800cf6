"""How reports write their rows: numbers rounded to what they mean, accounts' labels,
text safe for spreadsheets, no infinite numbers; as a table, CSV or JSON."""

from __future__ import annotations

import json
import math
from typing import Any

import pandas as pd
from tabulate import tabulate

from snapshotter.reports.query import typed_column

# Decimals of the numbers reports and exports write, so that no float noise shows
# (9615.90000000003 is 9615.9): money, prices and quantities to 6, as normalize stores
# them and the views round what they sum or derive; ratios to 10, as the views round
# twr_index and drawdown; percentages to 8 (a ratio's 10, times 100).
MONEY_DECIMALS = 6
RATIO_DECIMALS = 10
PERCENT_DECIMALS = 8
RATIO_COLUMNS = {"daily_return", "twr_index", "drawdown", "weight", "ratio", "xirr",
                 # report performance's
                 "twr", "nav_return", "cagr", "max_drawdown", "volatility",
                 "benchmark_return", "excess_return"}


def decimals(column: str) -> int:
    if column in RATIO_COLUMNS:
        return RATIO_DECIMALS
    if column.endswith("_pct"):
        return PERCENT_DECIMALS
    return MONEY_DECIMALS


def rounded(frame: pd.DataFrame) -> pd.DataFrame:
    """Numbers as the reports write them: typed (query.typed_column) and rounded
    (decimals())."""
    out = frame.copy()
    for name in out.columns:
        column = out[name]
        if column.dtype == object:
            column = typed_column(list(column))
        if pd.api.types.is_float_dtype(column):
            column = column.round(decimals(str(name))) + 0.0  # + 0.0: no -0.0
        out[name] = column
    return out


def with_labels(frame: pd.DataFrame, labels: dict[str, str]) -> pd.DataFrame:
    """``frame`` with each account's ``label`` (``accounts[].label``) after its
    ``account`` column, when the config gives any account a label."""
    if not labels or "account" not in frame.columns or "label" in frame.columns:
        return frame
    out = frame.copy()
    out.insert(list(out.columns).index("account") + 1, "label",
               pd.Series([labels.get(str(a)) for a in out["account"]], index=out.index,
                         dtype=object))
    return out


# A cell a spreadsheet would read as a formula (or whose leading tab or CR it would eat):
# OWASP's CSV injection rule, a single quote before it, so that it stays text.
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def spreadsheet_safe(text: str) -> str:
    return f"'{text}" if text.startswith(FORMULA_STARTS) else text


def _safe_cell(value: Any) -> Any:
    return spreadsheet_safe(value) if isinstance(value, str) else value


def safe_for_spreadsheets(frame: pd.DataFrame) -> pd.DataFrame:
    """The text cells of ``frame`` neutralised (spreadsheet_safe); numbers untouched."""
    out = frame.copy()
    for name in out.columns:
        if out[name].dtype == object or pd.api.types.is_string_dtype(out[name]):
            out[name] = out[name].map(_safe_cell, na_action="ignore")
    return out


def non_finite(frame: pd.DataFrame, what: str = "") -> tuple[pd.DataFrame, list[str]]:
    """``frame`` with every infinite number made empty (NULL), and a note per column
    naming the rows (by account) that had one: JSON has no Infinity, and no figure is
    meaningful as one (e.g. a return over a close of 1e-300)."""
    out = frame.copy()
    notes = []
    for name in out.columns:
        column = out[name]
        if not pd.api.types.is_float_dtype(column):
            continue
        bad = column.isin([math.inf, -math.inf])
        if not bad.any():
            continue
        out[name] = column.where(~bad)
        rows = ", ".join(dict.fromkeys(str(a) for a in out.loc[bad, "account"])) \
            if "account" in out.columns else f"{int(bad.sum())} row(s)"
        notes.append(f"{what}{name} is empty for {rows}: not a finite number (check the "
                     "data it is computed from)")
    return out, notes


def _cell(value: Any, column: str) -> Any:
    if value is None or (not isinstance(value, str) and pd.isna(value)):
        return ""
    if column == "warnings":  # the texts: `snapshotter status`, or --format json/csv
        count = len(str(value).splitlines())
        return f"{count} (see status)"
    if isinstance(value, float):
        # Ratios, not money: 6 decimals in a table.
        return f"{value:.6f}" if column in RATIO_COLUMNS else f"{value:,.2f}"
    return value


def render(frame: pd.DataFrame, fmt: str) -> str:
    """The frame as text to print (no trailing newline); an infinite number is empty
    (see non_finite, whose notes the command prints)."""
    frame, _ = non_finite(rounded(frame))
    if fmt == "csv":
        return safe_for_spreadsheets(frame).to_csv(
            index=False, lineterminator="\n").removesuffix("\n")
    if fmt == "json":
        records = frame.astype(object).where(frame.notna(), None).to_dict("records")
        return json.dumps(records, default=str, indent=2, allow_nan=False)
    if frame.empty:
        return "(no rows)"
    columns = list(frame.columns)
    rows = [[_cell(v, c) for v, c in zip(row, columns, strict=True)]
            for row in frame.itertuples(index=False)]
    return tabulate(rows, headers=list(frame.columns), disable_numparse=True,
                    stralign="right")
