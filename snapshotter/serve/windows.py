"""The dashboard's windows (1M, 3M, 6M, 1Y, 3Y, all, FY) and the `report performance
--from D --to D` dates each one stands for (docs/dashboard.md, "Windows")."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date

import pandas as pd
from starlette.exceptions import HTTPException
from starlette.requests import Request

#: rolling windows: months back from the latest snapshot
MONTHS = {"1M": 1, "3M": 3, "6M": 6, "1Y": 12, "3Y": 36}
WINDOWS = (*MONTHS, "all", "FY")
DEFAULT = "1Y"
FY_PATTERN = re.compile(r"^(\d{4})-(\d{2})$")


@dataclass(frozen=True)
class Window:
    """What the URL asked for: a rolling window, ``all``, or the financial year starting
    in April of ``fy_start`` (None: the one holding the latest snapshot)."""

    name: str = DEFAULT
    fy_start: int | None = None

    @property
    def key(self) -> str:
        return f"FY{fy_label(self.fy_start)}" if self.name == "FY" and self.fy_start \
            else self.name

    def query(self) -> str:
        """This window as a query string."""
        if self.name == "FY" and self.fy_start is not None:
            return f"window=FY&fy={fy_label(self.fy_start)}"
        return f"window={self.name}"

    def dates(self, latest: date) -> tuple[date | None, date]:
        """``--from`` and ``--to`` of `report performance`: the start (None: from the
        first snapshot) and the end, given the latest snapshot's date."""
        if self.name in MONTHS:
            start = (pd.Timestamp(latest) - pd.DateOffset(months=MONTHS[self.name])).date()
            return start, latest
        if self.name == "FY":
            first = self.fy_start if self.fy_start is not None else fy_of(latest)
            return date(first, 4, 1), date(first + 1, 3, 31)
        return None, latest

    def resolved(self, latest: date) -> Window:
        """The FY window with its year named (the current one: the latest snapshot's)."""
        if self.name == "FY" and self.fy_start is None:
            return Window("FY", fy_of(latest))
        return self


def fy_of(day: date) -> int:
    """The year the financial year holding ``day`` starts in (April to March)."""
    return day.year if day.month >= 4 else day.year - 1


def fy_label(start: int) -> str:
    return f"{start}-{(start + 1) % 100:02d}"


def parse(request: Request) -> Window:
    """``?window=NAME`` (default 1Y) and, for FY, ``?fy=2025-26``; anything else is a 404."""
    name = request.query_params.get("window")
    fy = request.query_params.get("fy")
    if name is None:
        name = "FY" if fy is not None else DEFAULT
    if name not in WINDOWS:
        raise HTTPException(404, f"no window {name!r} (one of {', '.join(WINDOWS)})")
    if fy is None or name != "FY":
        if fy is not None:
            raise HTTPException(404, "fy= goes with window=FY")
        return Window(name)
    match = FY_PATTERN.match(fy)
    if not match or (int(match.group(1)) + 1) % 100 != int(match.group(2)) \
            or not 1900 <= int(match.group(1)) < 3000:
        raise HTTPException(404, f"no financial year {fy!r} (say e.g. fy=2025-26)")
    return Window("FY", int(match.group(1)))


def choices(current: Window, latest: date | None) -> list[tuple[str, str, bool]]:
    """The window links: (label, query, chosen); on a financial year, the one before it
    (and the one after, up to the latest snapshot's) too."""
    out = []
    for name in WINDOWS:
        window = Window(name)
        label = name
        if name == "FY" and latest is not None:
            window = current.resolved(latest) if current.name == "FY" \
                else Window("FY", fy_of(latest))
            label = f"FY {fy_label(window.fy_start or fy_of(latest))}"
        out.append((label, window.query(), current.name == name))
    if current.name == "FY" and latest is not None:
        year = current.resolved(latest).fy_start or fy_of(latest)
        out.append((f"« FY {fy_label(year - 1)}", Window("FY", year - 1).query(), False))
        if year < fy_of(latest):
            out.append((f"FY {fy_label(year + 1)} »", Window("FY", year + 1).query(), False))
    return out
