"""A page's tables: shown sortable in the page, and each downloadable as CSV (the
`report` commands' CSV: rounded, spreadsheet-safe) from the same frame, by adding
``?csv=NAME`` to the page's URL."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any
from urllib.parse import urlencode

import pandas as pd
from starlette.requests import Request
from starlette.responses import Response

from snapshotter.reports import render
from snapshotter.serve import formatting

if TYPE_CHECKING:
    from snapshotter.serve.app import Dashboard


@dataclass(frozen=True)
class Cell:
    text: str
    sort: str  # what the column sorts by (a number as text, or the text)
    css: str = ""
    href: str | None = None


@dataclass
class Table:
    """``frame`` shown with these column kinds; ``links``: column -> row -> URL."""

    name: str
    frame: pd.DataFrame
    money: Sequence[str] = ()
    percents: Sequence[str] = ()
    numbers: Sequence[str] = ()
    signed: Sequence[str] = ()  # coloured up/down
    links: dict[str, Callable[[pd.Series], str | None]] = field(default_factory=dict)
    headers: dict[str, str] = field(default_factory=dict)
    caption: str = ""

    @property
    def columns(self) -> list[str]:
        return [str(c) for c in self.frame.columns]

    def header(self, column: str) -> str:
        return self.headers.get(column, column.replace("_", " "))

    def rows(self) -> list[list[Cell]]:
        out = []
        for _, row in self.frame.iterrows():
            out.append([self._cell(column, row) for column in self.columns])
        return out

    def _cell(self, column: str, row: pd.Series) -> Cell:
        value = row[column]
        missing = value is None or (not isinstance(value, str) and pd.isna(value))
        number = None if missing or isinstance(value, str) else _as_float(value)
        if column in self.money:
            text = formatting.rupees(number)
        elif column in self.percents:
            text = formatting.percent(number)
        elif column in self.numbers:
            text = formatting.number(number, 0 if number is not None and number.is_integer()
                                     else 2)
        else:
            text = "" if missing else str(value)
        css = ""
        if column in self.signed and number is not None and number != 0:
            css = "up" if number > 0 else "down"
        link = self.links.get(column)
        sort = "" if missing else (repr(number) if number is not None else str(value))
        return Cell(text, sort, css, link(row) if link and not missing else None)

    def csv(self) -> str:
        return render.render(self.frame, "csv") + "\n"


def _as_float(value: Any) -> float | None:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def csv_link(request: Request, table: Table) -> str:
    query = dict(request.query_params)
    query["csv"] = table.name
    return f"{request.url.path}?{urlencode(query)}"


def answer(dashboard: Dashboard, request: Request, template: str, tables: Sequence[Table],
           **context: Any) -> Response:
    """The page, or one of its tables as CSV when the URL asks (``?csv=NAME``); an
    unknown table name is a 404."""
    wanted = request.query_params.get("csv")
    if wanted is not None:
        for table in tables:
            if table.name == wanted:
                filename = f"{table.name}.csv"
                return Response(table.csv(), media_type="text/csv; charset=utf-8", headers={
                    "Content-Disposition": f'attachment; filename="{filename}"'})
        from starlette.exceptions import HTTPException

        raise HTTPException(404, f"no table {wanted!r} on this page")
    return dashboard.page(request, template, tables={t.name: t for t in tables},
                          csv_link=lambda t: csv_link(request, t), **context)
