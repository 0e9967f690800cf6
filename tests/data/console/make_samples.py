"""Writes the synthetic XLSX samples beside this file (no real personal data):

- ``tradebook.xlsx``: Console's Title Case tradebook variant of ``tradebook.csv``, its
  header at row 15 from column B below a preamble that names the client;
- ``dividends.xlsx``: the equity dividends report (sheet "Equity Dividends").

Run ``python tests/data/console/make_samples.py`` after changing them;
tests/test_console.py checks that the committed files hold what this writes.
"""

from __future__ import annotations

import csv
from datetime import date
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
CLIENT = "ZX1234"
HEADER_ROW = 15
TRADEBOOK_TITLES = {"isin": "ISIN", "trade_id": "Trade ID", "order_id": "Order ID"}
DIVIDENDS: list[tuple[str, str, date, int, float, float]] = [
    # Symbol, ISIN, Ex-Date, Quantity, Dividend Per Share, Net Dividend Amount
    ("INFY", "INE009A01021", date(2024, 5, 31), 20, 20.0, 400.0),
    ("TCS", "INE467B01029", date(2025, 6, 15), 5, 30.0, 150.0),
    ("SBIN", "INE062A01020", date(2025, 6, 16), 10, 15.9, 159.0),
]


def _title(name: str) -> str:
    return TRADEBOOK_TITLES.get(name, name.replace("_", " ").title())


def tradebook_rows(source: Path = HERE / "tradebook.csv") -> list[list[Any]]:
    """The CSV's rows as a spreadsheet holds them: dates as dates, numbers as numbers,
    IDs and times as text."""
    with source.open(newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        names = list(reader.fieldnames or [])
        rows: list[list[Any]] = [[_title(n) for n in names]]
        for record in reader:
            row: list[Any] = []
            for name in names:
                value: Any = record[name]
                if name == "trade_date":
                    value = date.fromisoformat(value)
                elif name in ("quantity", "price"):
                    value = float(value)
                elif name == "auction":
                    value = value == "true"
                row.append(value)
            rows.append(row)
    return rows


def _sheet(book: Any, title: str, preamble: list[list[Any]], rows: list[list[Any]]) -> None:
    sheet = book.active
    sheet.title = title
    for number, cells in enumerate(preamble, start=2):
        for column, value in enumerate(cells, start=2):
            sheet.cell(row=number, column=column, value=value)
    for number, cells in enumerate(rows, start=HEADER_ROW):
        for column, value in enumerate(cells, start=2):
            sheet.cell(row=number, column=column, value=value)


def write_tradebook(out: Path, client: str = CLIENT) -> Path:
    import openpyxl

    book = openpyxl.Workbook()
    _sheet(book, "Tradebook", [["Client ID", client], [],
                               ["Tradebook for Equity from 2023-04-01 to 2026-03-31"]],
           tradebook_rows())
    book.save(out)
    return out


def write_dividends(out: Path, client: str = CLIENT) -> Path:
    import openpyxl

    book = openpyxl.Workbook()
    total = sum(row[-1] for row in DIVIDENDS)
    header = ["Symbol", "ISIN", "Ex-Date", "Quantity", "Dividend Per Share",
              "Net Dividend Amount"]
    _sheet(book, "Equity Dividends",
           [["Client ID", client], [],
            ["Equity Dividends from 2024-04-01 to 2026-03-31"],
            ["Total Dividend Amount", total]],
           [header, *([s, i, d, q, p, a]
                      for s, i, d, q, p, a in DIVIDENDS)])
    book.save(out)
    return out


if __name__ == "__main__":
    print(write_tradebook(HERE / "tradebook.xlsx"))
    print(write_dividends(HERE / "dividends.xlsx"))
